"""Classifier-free guidance (Ho & Salimans 2022) as an ``eps_fn(x, t)`` for the samplers."""

from collections.abc import Callable

import torch
from torch import Tensor


def cfg_eps_fn(
    eps_model: Callable[..., Tensor],
    cond: dict[str, Tensor],
    uncond: dict[str, Tensor] | None,
    scale: float,
) -> Callable[[Tensor, Tensor], Tensor]:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6 with scale = 1 + w): eps_uc + scale * (eps_c - eps_uc).

    ``eps_model(x, t, **cond)`` is called once per step: with ``cond`` alone when ``uncond`` is None or
    ``scale == 1`` (as upstream), otherwise once on the batch ``[x, x]`` with each conditioning key
    ``cat([uncond[k], cond[k]])``, and the output is split with ``chunk(2)`` as in the CompVis samplers.
    """
    if not isinstance(cond, dict) or not all(isinstance(v, Tensor) for v in cond.values()):
        raise ValueError(f"`cond` must be a dict of tensors, got {type(cond).__name__}")
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not abs(scale) < float("inf"):
        raise ValueError(f"`scale` must be a finite number, got {scale!r}")

    if uncond is None or scale == 1.0:
        return lambda x, t: eps_model(x, t, **cond)

    if not isinstance(uncond, dict) or set(uncond) != set(cond):
        keys = sorted(uncond) if isinstance(uncond, dict) else type(uncond).__name__
        raise ValueError(f"`uncond` must have the keys of `cond` {sorted(cond)}, got {keys}")
    for k in cond:
        if not isinstance(uncond[k], Tensor) or uncond[k].shape != cond[k].shape:
            got = tuple(uncond[k].shape) if isinstance(uncond[k], Tensor) else type(uncond[k]).__name__
            raise ValueError(
                f"`uncond[{k!r}]` must match `cond[{k!r}]` shape {tuple(cond[k].shape)}, got {got}"
            )
    cond_in = {k: torch.cat([uncond[k], cond[k]]) for k in cond}  # [uncond, cond], built once

    def eps_fn(x: Tensor, t: Tensor) -> Tensor:
        eps_uncond, eps_cond = eps_model(torch.cat([x, x]), torch.cat([t, t]), **cond_in).chunk(2)
        return eps_uncond + scale * (eps_cond - eps_uncond)

    return eps_fn
