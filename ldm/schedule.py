"""Noise schedule of the CompVis latent diffusion models (Ho et al. 2020, DDPM; Rombach et al. 2022, LDM).

Glossary: ``beta_t`` is the per-step noise variance, ``alpha_t = 1 - beta_t`` and
``alpha_bar_t = prod_{s<=t} alpha_s`` (``alphas_cumprod``), so that x_t = sqrt(alpha_bar_t) x_0 +
sqrt(1 - alpha_bar_t) eps (DDPM eq. 4).
"""

import numpy as np
import torch

BUFFER_NAMES = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def make_beta_schedule_linear(linear_start: float, linear_end: float, timesteps: int = 1000) -> torch.Tensor:
    """LDM "linear" schedule (Rombach et al. 2022): betas linear in sqrt(beta), in float64."""
    if not 0.0 < linear_start <= linear_end < 1.0:
        raise ValueError(
            f"need 0 < `linear_start` <= `linear_end` < 1, got linear_start={linear_start}, linear_end={linear_end}"
        )
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"`timesteps` must be a positive int, got {timesteps!r}")
    return torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2


def schedule_buffers(betas_f64) -> dict[str, torch.Tensor]:
    """The 12 float32 schedule buffers of a CompVis DDPM (Ho et al. 2020), keyed by their upstream names.

    Computed in float64 numpy and cast to float32 at the end, as upstream ``DDPM.register_schedule``
    does (eps parameterization, ``v_posterior = 0``).
    """
    betas = betas_f64.detach().cpu().numpy() if isinstance(betas_f64, torch.Tensor) else betas_f64
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.size < 2:
        raise ValueError(f"`betas_f64` must be 1-D with at least 2 entries, got shape {betas.shape}")
    if not np.all((betas > 0) & (betas < 1)):
        raise ValueError(f"`betas_f64` must lie in (0, 1), got range [{betas.min()}, {betas.max()}]")

    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas, axis=0)  # alpha_bar_t
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])  # alpha_bar_{t-1}, alpha_bar_{-1} = 1
    # Posterior q(x_{t-1} | x_t, x_0), DDPM eq. (6)-(7).
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    buffers = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "log_one_minus_alphas_cumprod": np.log(1.0 - alphas_cumprod),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
        "posterior_variance": posterior_variance,
        # Clipped because the posterior variance is 0 at t = 0.
        "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    }
    assert tuple(buffers) == BUFFER_NAMES
    return {name: torch.tensor(value, dtype=torch.float32) for name, value in buffers.items()}
