"""Batch sampling whose image i never depends on the batch it is in: network calls are made per image.

`ldm.pipeline.sample_latents` gives image i the same seed-driven noise at any batch size, but a batched
UNet call is not bitwise batch-invariant (oneDNN convolutions and BLAS choose kernels by batch size, and
so do cuDNN/cuBLAS), so a PNG could differ by one grey level between batch size 1 and 4, or between an
interrupted and an uninterrupted run. Here the sampler still walks the whole batch, but every network
call (UNet, with guidance's [uncond, cond] pair; encoder; decoder; text encoder) sees one image, so the
bytes of image i depend only on its inputs and seed. On a GPU this trades batch throughput for exact
resumability; `batch_size` then groups images per sampler loop and per I/O step.
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
                 eps_model: Callable[..., Tensor] | None = None) -> Tensor:
    """Latents [B, *shape] as `ldm.pipeline.sample_latents`, with per-image network calls (module doc)."""
    sample_fn = get_sampler(sampler)
    device = model.betas.device
    # 1. Initial noise, one CPU generator per image.
    generators = make_generators(seeds)
    x = randn_per_image(generators, tuple(shape), device=device)
    # 2. eps_theta with guidance, one image per network call.
    eps_fn = per_image_eps_fn(eps_model or model.apply_model, cond, uncond, guidance_scale)
    # 3. Denoising loop on the DDIM timestep grid; DDIM's eta noise also comes from the image's generator.
    timesteps = ddim_timesteps(steps, model.config.timesteps)
    kwargs = {"eta": eta, "noise_sampler": per_image_noise_sampler(generators)} if sampler == "ddim" else {}
    with autocast_context(device, autocast):
        return sample_fn(eps_fn, x, timesteps, model.alphas_cumprod, **kwargs).float()


def _to_uint8(x: Tensor) -> np.ndarray:
    """[1, 3, H, W] in about [-1, 1] -> HxWx3 uint8: clamp, map to [0, 255], round once."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()


@torch.inference_mode()
def decode_images(model, z: Tensor, *, autocast: torch.dtype | None = None, tile: int | None = None,
                  stride: int | None = None) -> list[np.ndarray]:
    """Decode latents one image at a time (tiled and blended in pixel space when `tile` is given)."""
    device = model.betas.device
    dtype = next(model.first_stage_model.parameters()).dtype
    images = []
    with autocast_context(device, autocast):
        for i in range(z.shape[0]):
            zi = z[i:i + 1].to(device, dtype)
            if tile is None:
                x = model.decode_first_stage(zi)
            else:
                x = blend_tiles(model.decode_first_stage, [zi], tile=tile, stride=stride,
                                scale=model.downsample_factor)
            images.append(_to_uint8(x))
    return images


@torch.inference_mode()
def encode_condition(model, images: Tensor, *, autocast: torch.dtype | None = None) -> Tensor:
    """`model.get_learned_conditioning` per image (first-stage encoder) -> float32 [B, C, h, w]."""
    device = model.betas.device
    dtype = next(model.first_stage_model.parameters()).dtype
    with autocast_context(device, autocast):
        return torch.cat([model.get_learned_conditioning(images[i:i + 1].to(device, dtype)).float()
                          for i in range(images.shape[0])])


@torch.inference_mode()
def text_condition(model, prompts: list[str], *, autocast: torch.dtype | None = None) -> Tensor:
    """BERT context per prompt, one prompt per call -> float32 [B, 77, D]."""
    with autocast_context(model.betas.device, autocast):
        return torch.cat([model.get_learned_conditioning([p]).float() for p in prompts])
