"""Percentile bootstrap confidence intervals (Efron & Tibshirani 1993), seeded.

Per-sample metrics: resample the per-sample values (1000 resamples, 95%). FID/KID: optional, off by
default; each resample re-runs the statistic on resampled feature rows, so it costs `n_resamples` full
metric evaluations (FID at D=2048: one 2048x2048 `sqrtm`, ~1-3 s on CPU, i.e. ~20-50 min for 1000).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ldm_lab.metrics.result import MetricResult

N_RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[[np.ndarray], np.ndarray] = lambda x: x.mean(axis=-1),
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float]:
    """(low, high) percentile CI of `statistic` (vectorised over the last axis) of `values`."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"`values` must be a non-empty 1-D sequence, got shape {values.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_resamples, values.size))
    stats = statistic(values[idx])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci_two_sample(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    fake: np.ndarray,
    real: np.ndarray,
    *,
    n_resamples: int = 100,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile CI of a two-set statistic (e.g. FID) by resampling the rows of both feature sets."""
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for i in range(n_resamples):
        stats[i] = statistic(
            fake[rng.integers(0, len(fake), len(fake))], real[rng.integers(0, len(real), len(real))]
        )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarize_per_sample(
    name: str,
    values: Sequence[float | None],
    *,
    protocol: str = "",
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> MetricResult:
    """Mean of the defined per-sample values with a bootstrap 95% CI; None entries are counted, not used."""
    defined = np.array([v for v in values if v is not None], dtype=np.float64)
    n_undefined = len(values) - defined.size
    extra = {"n_undefined": n_undefined} if n_undefined else {}
    if defined.size == 0:
        return MetricResult.missing(
            name, f"no sample has a defined {name} ({len(values)} samples)", protocol=protocol
        )
    if not np.isfinite(defined).all():
        # e.g. PSNR of identical images is +inf: the mean is +inf and a CI is meaningless.
        return MetricResult(
            name,
            float(defined.mean()),
            n=defined.size,
            protocol=protocol,
            extra=extra,
            warnings=("non-finite per-sample values (identical images give PSNR = inf); no CI",),
        )
    ci = bootstrap_ci(defined, n_resamples=n_resamples, seed=seed)
    return MetricResult(
        name,
        float(defined.mean()),
        n=defined.size,
        ci95=ci,
        protocol=protocol,
        extra={"std": float(defined.std()), **extra},
    )
