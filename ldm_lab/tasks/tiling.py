"""Overlapping-tile evaluation with border-weighted blending, as upstream's split-input sampling.

CompVis `LatentDiffusion.apply_model` / `decode_first_stage` with `split_input_params` (notebook_helpers.py
for bsr_sr: kernel 128, stride 64 latent pixels, weights clipped to [0.01, 0.5]) cut the latent into
overlapping tiles, run the network on each, multiply each output by a weight that falls off towards the
tile border (`delta_border`: normalised distance to the nearest edge, clipped) and divide the folded sum by
the folded weights. Here the last tile of a row/column is aligned with the image edge, so any size is
covered; all tiles of one image go through the network in one call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

TILE_SIZE, TILE_STRIDE = 128, 64  # latent pixels, upstream bsr_sr settings
WEIGHT_CLIP = (0.01, 0.5)  # clip_min_weight, clip_max_weight


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis: every `stride`, plus one aligned with the end; [0] if it fits."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    return starts if starts[-1] == size - tile else [*starts, size - tile]


def tile_weights(h: int, w: int) -> Tensor:
    """Upstream `delta_border` weights [h, w]: distance to the nearest tile edge in [0, 0.5], clipped."""
    y = torch.arange(h, dtype=torch.float32) / max(h - 1, 1)
    x = torch.arange(w, dtype=torch.float32) / max(w - 1, 1)
    dy, dx = torch.minimum(y, 1 - y), torch.minimum(x, 1 - x)
    return torch.minimum(dy[:, None], dx[None, :]).clamp(*WEIGHT_CLIP)


def n_tiles(h: int, w: int, tile: int, stride: int) -> int:
    return len(tile_starts(h, tile, stride)) * len(tile_starts(w, tile, stride))


def blend_tiles(fn: Callable[..., Tensor], inputs: list[Tensor], *, tile: int, stride: int,
                scale: int = 1) -> Tensor:
    """Evaluate `fn` on overlapping tiles of `inputs` (each [1, C, H, W]) and blend: output [1, C', sH, sW].

    `fn(*tile_batches)` gets [T, C, th, tw] crops of every input at the same places and returns
    [T, C', s·th, s·tw]. With a single tile the output is `fn(*inputs)` unchanged.
    """
    height, width = inputs[0].shape[-2:]
    th, tw = min(tile, height), min(tile, width)
    boxes = [(y, x) for y in tile_starts(height, th, stride) for x in tile_starts(width, tw, stride)]
    if len(boxes) == 1:
        return fn(*inputs)
    crops = [torch.cat([inp[..., y:y + th, x:x + tw] for y, x in boxes]) for inp in inputs]
    out = fn(*crops).float()
    weight = tile_weights(th * scale, tw * scale).to(out.device)
    acc = out.new_zeros((1, out.shape[1], height * scale, width * scale))
    norm = out.new_zeros((1, 1, height * scale, width * scale))
    for k, (y, x) in enumerate(boxes):
        ys, xs = slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale)
        acc[..., ys, xs] += out[k] * weight
        norm[..., ys, xs] += weight
    return acc / norm


def tiled_eps_model(apply_model: Callable[..., Tensor], *, tile: int, stride: int) -> Callable[..., Tensor]:
    """`eps_model(x, t, concat=c)` evaluated tile-wise per row (concat-conditioned models)."""
    def eps_model(x: Tensor, t: Tensor, *, concat: Tensor) -> Tensor:
        rows = []
        for r in range(x.shape[0]):
            fn = lambda xc, cc, r=r: apply_model(xc, t[r:r + 1].expand(xc.shape[0]), concat=cc)
            rows.append(blend_tiles(fn, [x[r:r + 1], concat[r:r + 1]], tile=tile, stride=stride).to(x.dtype))
        return torch.cat(rows)

    return eps_model
