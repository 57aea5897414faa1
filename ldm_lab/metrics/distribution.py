"""Dataset-level metrics from features: FID with KID beside it, precision/recall, optional bootstrap CIs."""

from __future__ import annotations

import dataclasses

import numpy as np

from ldm_lab.metrics.bootstrap import bootstrap_ci_two_sample
from ldm_lab.metrics.fid import fid_from_features, fid_result
from ldm_lab.metrics.kid import kid_from_features, kid_result
from ldm_lab.metrics.precision_recall import precision_recall_results
from ldm_lab.metrics.result import KEY_FID, KEY_KID, MetricResult


def distribution_metrics(
    fake: np.ndarray,
    real: np.ndarray,
    *,
    protocol: str,
    fake_pr: np.ndarray | None = None,
    real_pr: np.ndarray | None = None,
    pr_protocol: str = "",
    bootstrap_resamples: int = 0,
    seed: int = 0,
) -> dict[str, MetricResult]:
    """FID and KID on Inception features (always both), precision/recall when PR features are given.

    `bootstrap_resamples` > 0 adds a percentile CI to FID and KID by resampling feature rows; it costs that
    many full evaluations (see `bootstrap.py`), so it is off by default.
    """
    out = {
        KEY_FID: fid_result(fake, real, protocol=protocol),
        KEY_KID: kid_result(fake, real, protocol=protocol),
    }
    if bootstrap_resamples > 0:
        statistics = {
            KEY_FID: fid_from_features,
            KEY_KID: lambda a, b: kid_from_features(a, b, subsets=10)[0],
        }
        for key, statistic in statistics.items():
            if out[key].available:
                ci = bootstrap_ci_two_sample(
                    statistic, fake, real, n_resamples=bootstrap_resamples, seed=seed
                )
                out[key] = dataclasses.replace(out[key], ci95=ci)
    if fake_pr is not None and real_pr is not None:
        out.update(precision_recall_results(fake_pr, real_pr, protocol=pr_protocol))
    elif (fake_pr is None) != (real_pr is None):
        raise ValueError("give both `fake_pr` and `real_pr` features, or neither")
    return out
