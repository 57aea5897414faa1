"""Samplers for eps-prediction diffusion models: DDIM, PLMS and DPM-Solver++(2M).

Each sampler is one function over ``eps_fn(x, t) -> eps`` (see ``ldm.guidance.cfg_eps_fn``), where ``t``
is a LongTensor [B] on ``x.device`` holding the model timestep. All three walk the same ascending
``timesteps`` (e.g. ``ddim_timesteps(50)`` = 1, 21, ..., 981) from the last to the first, and the last
step goes to ``alpha_bar = alphas_cumprod[0]``, as the CompVis samplers do.

Notation (Song et al. 2021): ``alpha_bar`` = alphas_cumprod[t], ``alpha_bar_prev`` = alpha_bar of the
next (smaller) timestep, ``sigma_t`` the DDIM noise scale, ``pred_x0`` the predicted clean latent.
Per-step scalars are computed on the CPU before the loop, so the loop never syncs with the device.
The callback gets ``{"i": step index, "t": timestep (int), "x": new state, "pred_x0": pred_x0}``.
"""

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

EpsFn = Callable[[Tensor, Tensor], Tensor]  # eps_fn(x [B, ...], t LongTensor [B]) -> eps like x


def ddim_timesteps(steps: int, num_train_timesteps: int = 1000) -> torch.LongTensor:
    """DDIM "uniform" timestep selection (Song et al. 2021, Sec. 4.2), as upstream ``make_ddim_timesteps``.

    Ascending ``arange(0, T, T // steps) + 1``. Like upstream this can hold more than ``steps`` entries
    (steps=7 gives 8); steps whose last entry would be T (e.g. 3, 9, 27, 333, 1000 for T=1000) are
    rejected, since alphas_cumprod[T] does not exist (upstream fails on them with an IndexError).
    """
    for name, value in (("steps", steps), ("num_train_timesteps", num_train_timesteps)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"`{name}` must be an int, got {value!r}")
    if num_train_timesteps < 1:
        raise ValueError(f"`num_train_timesteps` must be >= 1, got {num_train_timesteps}")
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"`steps` must be in [1, {num_train_timesteps}], got {steps}")
    c = num_train_timesteps // steps
    timesteps = torch.arange(0, num_train_timesteps, c, dtype=torch.long) + 1
    if timesteps[-1] >= num_train_timesteps:
        raise ValueError(
            f"`steps`={steps} gives c = {num_train_timesteps} // {steps} = {c} and a last timestep of "
            f"{int(timesteps[-1])}, outside the {num_train_timesteps}-step schedule; choose another `steps`"
        )
    return timesteps


def _schedule(x: Tensor, timesteps, alphas_cumprod: Tensor) -> tuple[list[int], Tensor, Tensor]:
    """Validate the sampler inputs; return timesteps as ints and float32 CPU alpha_bar, alpha_bar_prev."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] < 1:
        desc = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"`x` must be a floating tensor [B, ...] with B >= 1, got a {desc}")
    alphas_cumprod = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float32)
    if alphas_cumprod.ndim != 1 or not bool(((alphas_cumprod > 0) & (alphas_cumprod <= 1)).all()):
        raise ValueError(
            f"`alphas_cumprod` must be 1-D with values in (0, 1], got shape {alphas_cumprod.shape}"
        )
    ts = torch.as_tensor(timesteps).detach().cpu()
    if ts.ndim != 1 or len(ts) < 1 or ts.is_floating_point() or ts.is_complex() or ts.dtype == torch.bool:
        raise ValueError(
            f"`timesteps` must be a non-empty 1-D integer tensor, got {ts.dtype} of shape {tuple(ts.shape)}"
        )
    if not bool((ts[1:] > ts[:-1]).all()) or ts[0] < 0 or ts[-1] >= len(alphas_cumprod):
        raise ValueError(
            f"`timesteps` must be strictly ascending within [0, {len(alphas_cumprod) - 1}], got {ts.tolist()}"
        )
    alpha_bar = alphas_cumprod[ts]
    # Upstream make_ddim_sampling_parameters: alphas_prev = [alphas_cumprod[0]] + alphas[:-1].
    alpha_bar_prev = torch.cat([alphas_cumprod[:1], alpha_bar[:-1]])
    return ts.tolist(), alpha_bar, alpha_bar_prev


def _ddim_coefficients(alpha_bar: Tensor, alpha_bar_prev: Tensor, sigma_t: Tensor) -> list[list[float]]:
    """Per-step float32 scalars of DDIM eq. (12), in upstream's float32 arithmetic."""
    dir_coef = (1.0 - alpha_bar_prev - sigma_t**2).sqrt()
    return torch.stack(
        [(1.0 - alpha_bar).sqrt(), alpha_bar.sqrt(), alpha_bar_prev.sqrt(), dir_coef], 1
    ).tolist()


def _ddim_step(
    x: Tensor, eps: Tensor, sqrt_one_minus_a, sqrt_a, sqrt_a_prev, dir_coef
) -> tuple[Tensor, Tensor]:
    """The deterministic part of DDIM eq. (12); returns (x_prev without noise, pred_x0)."""
    pred_x0 = (x - sqrt_one_minus_a * eps) / sqrt_a  # "predicted x0"
    return sqrt_a_prev * pred_x0 + dir_coef * eps, pred_x0  # + "direction pointing to x_t"


def _t_like(x: Tensor, step: int) -> Tensor:
    return torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)


@torch.no_grad()
def ddim_sample(
    eps_fn: EpsFn,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    *,
    eta: float = 0.0,
    noise_sampler: Callable[[Tensor], Tensor] | None = None,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12), step for step as the CompVis ``DDIMSampler``.

    Args:
        eta: 0 is deterministic DDIM; 1 gives the DDPM-like posterior variance of eq. (16).
        noise_sampler: ``noise_sampler(x) -> noise like x`` for eta > 0 (default ``torch.randn_like``;
            pass ``ldm.noise.per_image_noise_sampler`` for per-image seeds). Never called when eta == 0.
    """
    if not (isinstance(eta, int | float) and 0.0 <= eta < float("inf")):
        raise ValueError(f"`eta` must be a finite number >= 0, got {eta!r}")
    ts, alpha_bar, alpha_bar_prev = _schedule(x, timesteps, alphas_cumprod)
    # sigma_t, eq. (16), in float64 numpy from the float32 alphas, then float32, as upstream; its
    # numpy/torch mix makes 1 / (1 - alpha_bar) a float32 reciprocal, kept for parity with upstream's
    # float32 arithmetic.
    a, a_prev = alpha_bar.double().numpy(), alpha_bar_prev.double().numpy()
    recip = (1 / (1 - alpha_bar)).double().numpy()
    sigma_t = torch.from_numpy(eta * np.sqrt((1 - a_prev) * recip * (1 - a / a_prev))).float()
    coefs = _ddim_coefficients(alpha_bar, alpha_bar_prev, sigma_t)
    sigmas = sigma_t.tolist()
    noise_sampler = torch.randn_like if noise_sampler is None else noise_sampler

    for i, index in enumerate(reversed(range(len(ts)))):
        eps = eps_fn(x, _t_like(x, ts[index]))
        x, pred_x0 = _ddim_step(x, eps, *coefs[index])
        if eta > 0:
            x = x + sigmas[index] * noise_sampler(x)  # sigma_t * eps_t, eq. (12) last term
        if callback is not None:
            callback({"i": i, "t": ts[index], "x": x, "pred_x0": pred_x0})
    return x


@torch.no_grad()
def plms_sample(
    eps_fn: EpsFn,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    *,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """PLMS sampling (Liu et al. 2022, PNDM), as the CompVis ``PLMSSampler`` (eta 0).

    The first step is the pseudo improved Euler step (eps averaged with eps at the next timestep, an
    extra ``eps_fn`` call); later steps use the 2nd/3rd/4th-order Adams-Bashforth combination of the
    current and up to three previous eps, each applied through the DDIM transfer, PNDM eq. (9).
    """
    ts, alpha_bar, alpha_bar_prev = _schedule(x, timesteps, alphas_cumprod)
    coefs = _ddim_coefficients(alpha_bar, alpha_bar_prev, torch.zeros_like(alpha_bar))
    old_eps: list[Tensor] = []

    for i, index in enumerate(reversed(range(len(ts)))):
        eps = eps_fn(x, _t_like(x, ts[index]))
        if not old_eps:  # Pseudo improved Euler (2nd order), eps also at the next timestep (or t if last)
            x_next, _ = _ddim_step(x, eps, *coefs[index])
            eps_next = eps_fn(x_next, _t_like(x, ts[max(index - 1, 0)]))
            eps_prime = (eps + eps_next) / 2
        elif len(old_eps) == 1:  # 2nd-order Adams-Bashforth
            eps_prime = (3 * eps - old_eps[-1]) / 2
        elif len(old_eps) == 2:  # 3rd-order Adams-Bashforth
            eps_prime = (23 * eps - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:  # 4th-order Adams-Bashforth, PNDM eq. (12)
            eps_prime = (55 * eps - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x, pred_x0 = _ddim_step(x, eps_prime, *coefs[index])
        old_eps = [*old_eps, eps][-3:]
        if callback is not None:
            callback({"i": i, "t": ts[index], "x": x, "pred_x0": pred_x0})
    return x


@torch.no_grad()
def dpmpp_2m_sample(
    eps_fn: EpsFn,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    *,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): multistep 2nd order in data prediction.

    Choices: it walks the same discrete timesteps as DDIM with alpha_t = sqrt(alpha_bar_t),
    sigma_t = sqrt(1 - alpha_bar_t), lambda_t = log(alpha_t / sigma_t), alpha_bar read from the float32
    buffer; the last step goes to alpha_bar = alphas_cumprod[0] (DDIM's last alpha_bar_prev), so every
    lambda is finite. The first step is first order (identical to DDIM with eta 0); every later step,
    the last included, is second order. pred_x0 = (x - sigma_t eps) / alpha_t. Step scalars are computed
    in float64 on the CPU; x keeps its dtype.
    """
    ts, alpha_bar, alpha_bar_prev = _schedule(x, timesteps, alphas_cumprod)
    a = torch.cat([alpha_bar.flip(0), alpha_bar_prev[:1]]).double()  # alpha_bar along the trajectory
    alpha, sigma, lam = a.sqrt(), (1 - a).sqrt(), 0.5 * (a.log() - (-a).log1p())
    h = lam[1:] - lam[:-1]
    w = torch.cat([h.new_zeros(1), h[1:] / (2 * h[:-1])])  # 1 / (2 r_i), r_i = h_{i-1} / h_i; 0 on step 0
    # x_{i+1} = (sigma_{i+1} / sigma_i) x_i - alpha_{i+1} (e^{-h_i} - 1) D_i, Algorithm 2.
    coefs = torch.stack([sigma[:-1], alpha[:-1], sigma[1:] / sigma[:-1], -alpha[1:] * (-h).expm1(), w], 1)
    old_x0 = None

    for i, (sigma_i, alpha_i, ratio, phi, w_i) in enumerate(coefs.tolist()):
        t = ts[len(ts) - 1 - i]
        eps = eps_fn(x, _t_like(x, t))
        pred_x0 = (x - sigma_i * eps) / alpha_i  # data prediction x_theta
        d = pred_x0 if old_x0 is None else (1 + w_i) * pred_x0 - w_i * old_x0  # D_i
        x = ratio * x + phi * d
        old_x0 = pred_x0
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "pred_x0": pred_x0})
    return x


SAMPLERS: dict[str, Callable] = {"ddim": ddim_sample, "plms": plms_sample, "dpmpp2m": dpmpp_2m_sample}


def get_sampler(name: str) -> Callable:
    """Look up a sampler function by name (``"ddim"``, ``"plms"`` or ``"dpmpp2m"``)."""
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    return SAMPLERS[name]
