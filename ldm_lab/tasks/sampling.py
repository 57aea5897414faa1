"""Batch sampling for the runners, in one of two network batchings (`BATCHING`).

"per-image" (the default): image i never depends on the batch it is in. `ldm.pipeline.sample_latents`
gives image i the same seed-driven noise at any batch size, but a batched UNet call is not bitwise
batch-invariant (oneDNN convolutions and BLAS choose kernels by batch size, and so do cuDNN/cuBLAS), so a
PNG could differ by one grey level between batch size 1 and 4, or between an interrupted and an
uninterrupted run. Here the sampler still walks the whole batch, but every network call (UNet, with
guidance's [uncond, cond] pair; encoder; decoder; text encoder) sees one image, so the bytes of image i
depend only on its inputs and seed: resume, batch size and world size never change a file.

"batched": every network call takes the whole batch (2B rows with guidance), the throughput path on a
GPU. Noise is still drawn per image from its own seed, so image i is the same sample up to float rounding;
which images share a batch (batch size, resume, world size) can move a pixel by a grey level or so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ldm.guidance import cfg_eps_fn
from ldm.noise import make_generators, per_image_noise_sampler, randn_per_image
from ldm.pipeline import autocast_context
from ldm.samplers import ddim_timesteps, get_sampler
from ldm_lab.tasks.tiling import blend_tiles

BATCHING = ("per-image", "batched")


def _row(cond: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    return {k: v[i:i + 1] for k, v in cond.items()}


def per_image_eps_fn(eps_model: Callable[..., Tensor], cond: dict[str, Tensor],
                     uncond: dict[str, Tensor] | None, scale: float) -> Callable[[Tensor, Tensor], Tensor]:
    """Classifier-free guidance (`ldm.guidance.cfg_eps_fn`) applied image by image, outputs concatenated."""
    n = next(iter(cond.values())).shape[0]
    fns = [cfg_eps_fn(eps_model, _row(cond, i), None if uncond is None else _row(uncond, i), scale)
           for i in range(n)]
    return lambda x, t: torch.cat([fn(x[i:i + 1], t[i:i + 1]) for i, fn in enumerate(fns)])


@torch.inference_mode()
def sample_batch(model, *, seeds: list[int], shape: tuple[int, int, int], cond: dict[str, Tensor],
                 uncond: dict[str, Tensor] | None = None, guidance_scale: float = 1.0, sampler: str = "ddim",
                 steps: int = 50, eta: float = 0.0, autocast: torch.dtype | None = None,
                 eps_model: Callable[..., Tensor] | None = None, per_image: bool = True) -> Tensor:
    """Latents [B, *shape] as `ldm.pipeline.sample_latents`; network calls per image or batched (module doc)."""
    sample_fn = get_sampler(sampler)
    device = model.betas.device
    # 1. Initial noise, one CPU generator per image.
    generators = make_generators(seeds)
    x = randn_per_image(generators, tuple(shape), device=device)
    # 2. eps_theta with guidance: one image per network call, or the whole batch in one.
    eps_fn = (per_image_eps_fn if per_image else cfg_eps_fn)(eps_model or model.apply_model, cond, uncond,
                                                             guidance_scale)
    # 3. Denoising loop on the DDIM timestep grid; DDIM's eta noise also comes from the image's generator.
    timesteps = ddim_timesteps(steps, model.config.timesteps)
    kwargs = {"eta": eta, "noise_sampler": per_image_noise_sampler(generators)} if sampler == "ddim" else {}
    with autocast_context(device, autocast):
        return sample_fn(eps_fn, x, timesteps, model.alphas_cumprod, **kwargs).float()


def _to_uint8(x: Tensor) -> list[np.ndarray]:
    """[B, 3, H, W] in about [-1, 1] -> B HxWx3 uint8 arrays: clamp, map to [0, 255], round once."""
    return list(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


@torch.inference_mode()
def decode_images(model, z: Tensor, *, autocast: torch.dtype | None = None, tile: int | None = None,
                  stride: int | None = None, per_image: bool = True) -> list[np.ndarray]:
    """Decode latents one image at a time, or the batch in one call when not `per_image` (tiled decoding,
    blended in pixel space when `tile` is given, always goes image by image)."""
    device = model.betas.device
    dtype = next(model.first_stage_model.parameters()).dtype
    images = []
    with autocast_context(device, autocast):
        if not per_image and tile is None:
            return _to_uint8(model.decode_first_stage(z.to(device, dtype)))
        for i in range(z.shape[0]):
            zi = z[i:i + 1].to(device, dtype)
            if tile is None:
                x = model.decode_first_stage(zi)
            else:
                x = blend_tiles(model.decode_first_stage, [zi], tile=tile, stride=stride,
                                scale=model.downsample_factor)
            images.extend(_to_uint8(x))
    return images


@torch.inference_mode()
def encode_condition(model, images: Tensor, *, autocast: torch.dtype | None = None,
                     per_image: bool = True) -> Tensor:
    """`model.get_learned_conditioning` (first-stage encoder) per image or batched -> float32 [B, C, h, w]."""
    device = model.betas.device
    dtype = next(model.first_stage_model.parameters()).dtype
    step = 1 if per_image else max(1, images.shape[0])
    with autocast_context(device, autocast):
        return torch.cat([model.get_learned_conditioning(images[i:i + step].to(device, dtype)).float()
                          for i in range(0, images.shape[0], step)])


@torch.inference_mode()
def text_condition(model, prompts: list[str], *, autocast: torch.dtype | None = None,
                   per_image: bool = True) -> Tensor:
    """BERT context, one prompt per call or all in one -> float32 [B, 77, D]."""
    step = 1 if per_image else max(1, len(prompts))
    with autocast_context(model.betas.device, autocast):
        return torch.cat([model.get_learned_conditioning(prompts[i:i + step]).float()
                          for i in range(0, len(prompts), step)])
