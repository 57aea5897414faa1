"""Known-answer and parity tests for the feature statistics: FID, KID, precision/recall, result objects."""

import json

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics as tf_statistics
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import calculate_precision_recall_full

from ldm_lab.metrics import fid as fid_module
from ldm_lab.metrics.fid import fid_from_features, fid_result, frechet_distance
from ldm_lab.metrics.kid import kid_from_features, kid_result
from ldm_lab.metrics.precision_recall import (
    knn_radii,
    precision_recall_from_features,
    precision_recall_results,
)
from ldm_lab.metrics.result import MetricResult


def _features(seed, n, d, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).normal(size=(n, d)) * scale + shift).astype(np.float32)


# ---- Fréchet distance ----------------------------------------------------------------------------


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_of_scaled_full_covariance_matches_closed_form():
    a = np.random.default_rng(0).normal(size=(6, 6))
    sigma, c = a @ a.T + np.eye(6), 1.7
    # sqrt(sigma * c² sigma) = c sigma  ->  d² = |dmu|² + (1 - c)² tr(sigma)
    mu1, mu2 = np.zeros(6), np.full(6, 0.5)
    expected = 6 * 0.25 + (1 - c) ** 2 * np.trace(sigma)
    assert frechet_distance(mu1, sigma, mu2, c**2 * sigma) == pytest.approx(expected, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero():
    x = _features(0, 200, 16)
    assert abs(fid_from_features(x, x)) < 1e-8


def test_fid_equals_torch_fidelity_on_the_same_features():
    fake, real = _features(1, 300, 64, 1.2, 0.3), _features(2, 260, 64)
    ours = fid_from_features(fake, real)
    theirs = fid_statistics_to_metric(
        tf_statistics(torch.from_numpy(fake)), tf_statistics(torch.from_numpy(real)), verbose=False
    )["frechet_inception_distance"]
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_non_finite_sqrtm_falls_back_to_eps_offset(monkeypatch):
    fake, real = _features(3, 50, 8), _features(4, 50, 8, 1.5)
    expected = fid_from_features(fake, real)
    calls = []
    real_sqrtm = fid_module._sqrtm

    def flaky_sqrtm(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(fid_module, "_sqrtm", flaky_sqrtm)
    value = fid_from_features(fake, real)
    assert len(calls) == 2
    _, s1 = fid_module.fid_features_to_statistics(fake)
    _, s2 = fid_module.fid_features_to_statistics(real)
    eps = np.eye(8) * fid_module.SQRTM_EPS
    np.testing.assert_allclose(calls[1], (s1 + eps) @ (s2 + eps))
    assert value == pytest.approx(expected, rel=1e-4)


def test_sqrtm_non_finite_twice_or_large_imaginary_part_raises(monkeypatch):
    fake, real = _features(3, 20, 4), _features(4, 20, 4)
    monkeypatch.setattr(fid_module, "_sqrtm", lambda a: np.full_like(a, np.inf))
    with pytest.raises(ValueError, match="not finite even after"):
        fid_from_features(fake, real)
    monkeypatch.setattr(fid_module, "_sqrtm", lambda a: np.eye(4) * (1 + 0.5j))
    with pytest.raises(ValueError, match="imaginary component"):
        fid_from_features(fake, real)


def test_fid_result_warns_below_2048_and_reports_unavailable_below_2():
    res = fid_result(_features(0, 30, 8), _features(1, 40, 8), protocol="test")
    assert res.available and res.n == 30 and "2048" in res.warnings[0]
    assert json.loads(json.dumps(res.to_dict()))["value"] == pytest.approx(res.value)
    missing = fid_result(_features(0, 1, 8), _features(1, 40, 8), protocol="test")
    assert not missing.available and missing.value is None and "at least 2" in missing.unavailable


def test_bad_feature_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        fid_from_features(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# ---- KID -----------------------------------------------------------------------------------------


def test_kid_equals_torch_fidelity_with_the_same_subsets():
    fake, real = _features(5, 120, 32, 1.1, 0.2), _features(6, 150, 32)
    mean, std, size = kid_from_features(fake, real, subsets=20, subset_size=100)
    theirs = kid_features_to_metric(
        torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=20, kid_subset_size=100, verbose=False
    )
    assert size == 100
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-5)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-4)


def test_kid_subset_size_defaults_to_min_1000_and_n():
    fake, real = _features(7, 100, 8), _features(8, 120, 8)  # Urban100-sized: 1000 would fail
    _, _, size = kid_from_features(fake, real, subsets=3)
    assert size == 100
    res = kid_result(fake, real, protocol="p", subsets=3)
    assert res.extra["subset_size"] == 100 and res.extra["std"] >= 0
    with pytest.raises(ValueError, match="subset_size"):
        kid_from_features(fake, real, subset_size=101)


def test_kid_of_identical_distributions_is_near_zero_and_seeded():
    x, y = _features(9, 200, 16), _features(10, 200, 16)
    assert abs(kid_from_features(x, y, subsets=10)[0]) < 0.05
    assert kid_from_features(x, y, subsets=5) == kid_from_features(x, y, subsets=5)


# ---- precision / recall --------------------------------------------------------------------------


def _naive_precision_recall(fake, real, k=3):
    fake, real = fake.astype(np.float64), real.astype(np.float64)

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_r = np.sort(dist(real, real), axis=1)[:, k]  # index 0 is the self-distance
    fake_r = np.sort(dist(fake, fake), axis=1)[:, k]
    precision = np.mean([(dist(f[None], real)[0] <= real_r).any() for f in fake])
    recall = np.mean([(dist(r[None], fake)[0] <= fake_r).any() for r in real])
    return precision, recall


@pytest.mark.parametrize("batch_size", [7, 64, 4096])
def test_precision_recall_equals_naive_reference_exactly(batch_size):
    real, fake = _features(11, 160, 24), _features(12, 140, 24, 1.3, 0.2)
    fake[:20] = real[:20]  # exact duplicates across sets: ties on the ball boundary
    real[50:55] = real[55:60]  # duplicates inside a set
    assert precision_recall_from_features(fake, real, batch_size=batch_size) == _naive_precision_recall(
        fake, real
    )


def test_precision_recall_matches_torch_fidelity_counts():
    real, fake = _features(13, 150, 16), _features(14, 130, 16, 0.8)
    p, r = precision_recall_from_features(fake, real)
    tp, tr = calculate_precision_recall_full(torch.from_numpy(fake).double(), torch.from_numpy(real).double())
    assert (round(p * 130), round(r * 150)) == (round(tp * 130), round(tr * 150))


def test_knn_radius_excludes_self():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]], dtype=torch.float64)
    # 3rd neighbour of 0 is 6 (self excluded); of 10 it is 1 (distance 9).
    np.testing.assert_array_equal(knn_radii(x, k=3, batch_size=2).numpy(), [6, 5, 3, 5, 9])


def test_precision_recall_results_unavailable_for_tiny_sets():
    res = precision_recall_results(_features(0, 3, 4), _features(1, 10, 4), protocol="p")
    assert all(not r.available and "more than 3" in r.unavailable for r in res.values())


def test_metric_result_requires_value_xor_reason():
    with pytest.raises(ValueError, match="exactly one"):
        MetricResult("x", 1.0, unavailable="why")
    assert "unavailable" in str(MetricResult.missing("x", "no images"))


# ---- dataset-level bundle and per-sample accumulator ---------------------------------------------


def test_distribution_metrics_reports_kid_beside_fid_and_pr_when_given():
    from ldm_lab.metrics.distribution import distribution_metrics

    fake, real = _features(20, 60, 8, 1.2), _features(21, 70, 8)
    out = distribution_metrics(fake, real, protocol="p", fake_pr=fake, real_pr=real, pr_protocol="q")
    assert set(out) == {"fid", "kid", "precision", "recall"}
    assert out["fid"].warnings and out["kid"].extra["subset_size"] == 60 and out["precision"].protocol == "q"
    assert out["fid"].ci95 is None
    with_ci = distribution_metrics(fake, real, protocol="p", bootstrap_resamples=5)
    low, high = with_ci["fid"].ci95
    assert low < high and with_ci["kid"].ci95 is not None
    with pytest.raises(ValueError, match="both"):
        distribution_metrics(fake, real, protocol="p", fake_pr=fake)


def test_per_sample_accumulator_rows_and_summary():
    from ldm_lab.metrics.accumulator import PerSampleAccumulator

    acc = PerSampleAccumulator(["psnr_hole", "lpips"])
    acc.add("a", "inpainted_00001.png", {"psnr_hole": 20.0, "lpips": 0.2})
    acc.add(
        "b",
        "inpainted_00002.png",
        {"psnr_hole": None, "lpips": 0.4},
        {"psnr_hole": "the mask has no hole pixels"},
    )
    acc.add("c", "inpainted_00003.png", {"psnr_hole": float("inf"), "lpips": 0.3})
    assert acc.reasons == {"b": {"psnr_hole": "the mask has no hole pixels"}}
    rows = acc.csv_rows()
    assert list(rows[0]) == ["id", "file", "psnr_hole", "lpips"] and rows[1]["psnr_hole"] == ""
    assert rows[2]["psnr_hole"] == "inf"
    summary = acc.summary({"lpips": "alex"})
    assert summary["lpips"].value == pytest.approx(0.3) and summary["lpips"].n == 3
    assert summary["lpips"].protocol == "alex" and summary["lpips"].ci95[0] <= 0.3 <= summary["lpips"].ci95[1]
    assert summary["psnr_hole"].extra["n_undefined"] == 1
    with pytest.raises(ValueError, match="unknown per-sample columns"):
        PerSampleAccumulator(["psnr"])
    with pytest.raises(ValueError, match="lacks columns"):
        acc.add("d", "x.png", {"lpips": 0.1})
