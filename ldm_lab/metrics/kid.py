"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with a cubic polynomial kernel.

Subsets are drawn the way torch-fidelity does (generated subset first, from `RandomState(seed)`), so the
values match `torch_fidelity.metric_kid.kid_features_to_metric` on the same features.
"""

from __future__ import annotations

import numpy as np

from ldm_lab.metrics.result import KEY_KID, MetricResult

KID_SUBSETS = 100
KID_MAX_SUBSET_SIZE = 1000
KID_SEED = 2020  # torch-fidelity's default rng_seed


def polynomial_kernel(x: np.ndarray, y: np.ndarray, *, degree=3, gamma=None, coef0=1.0) -> np.ndarray:
    """k(x, y) = (gamma <x, y> + coef0)^degree, gamma = 1/D by default."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD² estimate (Gretton et al. 2012, eq. 3), diagonals of K_XX and K_YY excluded."""
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid_from_features(
    fake: np.ndarray,
    real: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = KID_SEED,
) -> tuple[float, float, int]:
    """(mean, std with ddof=0, subset size) of MMD² over random subsets; size defaults to min(1000, N)."""
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1]:
        raise ValueError(
            f"`fake` and `real` must be [N, D] with the same D, got {fake.shape} and {real.shape}"
        )
    n_max = min(len(fake), len(real))
    size = min(KID_MAX_SUBSET_SIZE, n_max) if subset_size is None else subset_size
    if not 2 <= size <= n_max:
        raise ValueError(f"`subset_size` must be in [2, {n_max}] (the smaller set's N), got {size}")
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        f = fake[rng.choice(len(fake), size, replace=False)]
        r = real[rng.choice(len(real), size, replace=False)]
        mmds[i] = mmd2_unbiased(polynomial_kernel(f, f), polynomial_kernel(f, r), polynomial_kernel(r, r))
    return float(mmds.mean()), float(mmds.std()), size


def kid_result(
    fake: np.ndarray, real: np.ndarray, *, protocol: str, subsets: int = KID_SUBSETS
) -> MetricResult:
    """KID as a result object (value = mean over subsets; `std` and `subset_size` recorded)."""
    n = min(len(fake), len(real))
    if n < 2:
        return MetricResult.missing(
            KEY_KID, f"KID needs at least 2 samples per set, got {n}", protocol=protocol, n=n
        )
    mean, std, size = kid_from_features(fake, real, subsets=subsets)
    return MetricResult(
        KEY_KID, mean, n=n, protocol=protocol, extra={"std": std, "subset_size": size, "subsets": subsets}
    )
