"""Tolerances for comparing two *different* float32 computations of the same quantity (no tests here).

Two code paths that compute the same values (ours vs a transcription of upstream, a batch vs image by
image, a library vs ours) agree only up to rounding, and by how much depends on the machine: SIMD width
and FMA contraction, the BLAS/oneDNN kernel picked for the CPU (MKL takes another code path on AMD than
on Intel AVX-512) and for the batch size, and the intra-op thread count all change the order of the
operations. Bitwise equality is for the *same* computation run twice (same seed, resume, writer
threads, a file saved and read back), never for two formulations.

The unit here is the float32 ULP at the tensor's magnitude, `ulp(max |expected|)` (2**-23 relative to
the largest value, up to a factor 2), not the ULP of each element: a value near zero that comes out of a
sum or difference of larger terms carries their absolute rounding error, which is many of its own ULPs.
"""

from __future__ import annotations

import numpy as np
import torch


def _float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def float32_ulp(magnitude: float) -> float:
    """Spacing of float32 numbers at `magnitude` (the smallest subnormal at 0)."""
    return float(np.spacing(np.float32(abs(magnitude))))


def max_ulp_distance(actual, expected) -> float:
    """max |actual - expected| in float32 ULPs of max |expected| (float64 differences, so exact)."""
    a, e = _float64(actual), _float64(expected)
    assert a.shape == e.shape, (a.shape, e.shape)
    assert np.isfinite(a).all() and np.isfinite(e).all(), "non-finite values"
    return float(np.abs(a - e).max() / float32_ulp(np.abs(e).max()))


def assert_close_ulps(actual, expected, max_ulps: float, msg: str = "") -> None:
    """Assert every |actual - expected| <= max_ulps * float32_ulp(max |expected|)."""
    distance = max_ulp_distance(actual, expected)
    scale = float(np.abs(_float64(expected)).max())
    assert distance <= max_ulps, (
        f"{msg + ': ' if msg else ''}max |actual - expected| = {distance:.2f} float32 ULPs of "
        f"max |expected| = {scale:.4g} (1 ULP = {float32_ulp(scale):.3g}), allowed {max_ulps}"
    )
