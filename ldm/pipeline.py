"""Sampling a LatentDiffusion model: per-image seeds, guidance, sampler choice, decode.

Task runners (ldm_lab) build the conditioning; this module turns it into latents and images.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from ldm.diffusion import LatentDiffusion
from ldm.guidance import cfg_eps_fn
from ldm.noise import make_generators, per_image_noise_sampler, randn_per_image
from ldm.samplers import SAMPLERS, ddim_timesteps, get_sampler


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """fp16/bf16 autocast on CUDA only; a no-op elsewhere or for float32/None."""
    if dtype in (torch.float16, torch.bfloat16) and device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def sample_latents(model: LatentDiffusion, *, seeds: Sequence[int], shape: tuple[int, int, int],
                   cond: dict[str, torch.Tensor], uncond: dict[str, torch.Tensor] | None = None,
                   guidance_scale: float = 1.0, sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
                   x_T: torch.Tensor | None = None, autocast: torch.dtype | None = None,
                   callback: Callable[[dict], None] | None = None) -> torch.Tensor:
    """Draw latents [B, *shape]: image b starts from (and, for eta > 0, is perturbed by) its own seed.

    Args:
        cond / uncond: keyword arguments of `model.apply_model` (`concat=` and/or `context=`), batch B.
        x_T: optional initial latents; the per-image generators still drive the DDIM eta noise.
    """
    sample_fn = get_sampler(sampler)
    if sampler != "ddim" and eta != 0.0:
        raise ValueError(f"`eta` must be 0 for sampler {sampler!r} (only ddim is stochastic), got {eta}")
    if len(shape) != 3:
        raise ValueError(f"`shape` must be (channels, height, width) of one latent, got {shape}")
    device = model.betas.device
    generators = make_generators(seeds)
    # 1. Initial noise, one generator per image.
    x = randn_per_image(generators, tuple(shape), device=device) if x_T is None else x_T.to(device, torch.float32)
    if x.shape[0] != len(seeds):
        raise ValueError(f"`x_T` has batch {x.shape[0]} but {len(seeds)} seeds were given")
    # 2. eps_theta with classifier-free guidance (one batched UNet call).
    eps_fn = cfg_eps_fn(model.apply_model, cond, uncond, guidance_scale)
    # 3. Denoising loop on the DDIM timestep grid.
    timesteps = ddim_timesteps(steps, model.config.timesteps)
    kwargs = {"eta": eta, "noise_sampler": per_image_noise_sampler(generators)} if sampler == "ddim" else {}
    with autocast_context(device, autocast):
        return sample_fn(eps_fn, x, timesteps, model.alphas_cumprod, callback=callback, **kwargs).float()


@torch.inference_mode()
def decode_to_uint8(model: LatentDiffusion, z: torch.Tensor) -> torch.Tensor:
    """Latents -> uint8 images [B, H, W, 3]: clamp to [-1, 1], map to [0, 255], round once."""
    x = model.decode_first_stage(z.to(next(model.first_stage_model.parameters()).dtype)).float()
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


__all__ = ["SAMPLERS", "autocast_context", "decode_to_uint8", "sample_latents"]
