"""Fréchet Inception Distance (Heusel et al. 2017) over pre-extracted features, in float64.

Stages are kept apart (STYLE 15): features -> (mu, sigma) -> distance. Feature extraction lives in
`fidelity_features.py`; this module never sees an image.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ldm_lab.metrics.result import KEY_FID, MetricResult

# Below this many samples the 2048-d covariance is rank-deficient and FID is dominated by bias.
FID_MIN_RELIABLE_N = 2048
SQRTM_EPS = 1e-6  # offset added to both covariances when sqrtm(sigma1 @ sigma2) is not finite
MAX_IMAG = 1e-3  # largest tolerated imaginary part on the diagonal of sqrtm (numerical noise)


def fid_features_to_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1) of an [N, D] feature matrix, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"`features` must be [N, D] with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = SQRTM_EPS) -> float:
    """d² = |mu1 - mu2|² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})  (Dowson & Landau 1982)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Singular product: the standard fix (pytorch-fid / TTUR) offsets both covariances by eps·I.
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError(
                "sqrtm(sigma1 @ sigma2) is not finite even after adding eps·I to both covariances"
            )
    if np.iscomplexobj(covmean):
        # Only the diagonal enters the trace; pytorch-fid checks the same entries with the same tolerance.
        max_imag = np.max(np.abs(np.diagonal(covmean).imag))
        if max_imag > MAX_IMAG:
            raise ValueError(
                f"sqrtm(sigma1 @ sigma2) has an imaginary component of {max_imag:.3g} (> {MAX_IMAG})"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """Matrix square root; a separate name so tests can force the non-finite branch."""
    return scipy.linalg.sqrtm(a)


def fid_from_features(fake: np.ndarray, real: np.ndarray) -> float:
    """FID between two [N, D] feature matrices (float64 statistics)."""
    mu1, sigma1 = fid_features_to_statistics(fake)
    mu2, sigma2 = fid_features_to_statistics(real)
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def fid_result(fake: np.ndarray, real: np.ndarray, *, protocol: str) -> MetricResult:
    """FID as a result object; N < 2048 carries a bias warning (report KID beside it)."""
    n = min(len(fake), len(real))
    if n < 2:
        return MetricResult.missing(
            KEY_FID, f"FID needs at least 2 samples per set, got {n}", protocol=protocol, n=n
        )
    warnings = ()
    if n < FID_MIN_RELIABLE_N:
        warnings = (
            f"N={n} < {FID_MIN_RELIABLE_N}: the covariance is rank-deficient and FID is biased upwards; "
            "compare only at equal N and read KID beside it",
        )
    value = fid_from_features(fake, real)
    return MetricResult(
        KEY_FID,
        value,
        n=n,
        protocol=protocol,
        warnings=warnings,
        extra={"n_fake": len(fake), "n_real": len(real)},
    )
