"""Paired comparison of runs (`ldm_lab.compare`): parity with scipy and a literal paired bootstrap, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from ldm_lab import compare
from ldm_lab.metrics.bootstrap import N_RESAMPLES, SEED
from tests.test_report_widgets import make_run


def _pair(tmp_path, a_values, b_values, metric="psnr_hole"):
    a, b = make_run(tmp_path / "a", n=len(a_values)), make_run(tmp_path / "b", n=len(b_values), scale=3.0)
    for run in (a, b):
        run.run["dataset"] = {"fingerprint": "f" * 64}
    for s, v in zip(a.samples, a_values, strict=True):
        s.metrics = {metric: v}
    for s, v in zip(b.samples, b_values, strict=True):
        s.metrics = {metric: v}
    return a, b


def test_paired_statistics_match_scipy_and_a_literal_paired_bootstrap(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.normal(20, 2, 12)
    b = a + rng.normal(0.5, 1.0, 12)
    ra, rb = _pair(tmp_path, a.tolist(), b.tolist())
    result = compare.paired(ra, rb, "psnr_hole")
    assert result.n == 12 and result.delta == pytest.approx(float((b - a).mean()), rel=1e-12)
    assert result.wilcoxon_p == pytest.approx(float(wilcoxon(b - a).pvalue), rel=1e-12)
    # the paired bootstrap, written out: draw n pair indices with replacement, average the deltas, repeat
    gen = np.random.default_rng(SEED)
    means = []
    draws = gen.integers(0, 12, size=(N_RESAMPLES, 12))
    for row in draws:
        means.append(sum(b[i] - a[i] for i in row) / 12)
    low, high = np.quantile(means, [0.025, 0.975])
    assert result.ci95 == pytest.approx((low, high), rel=1e-12)
    assert result.better == ("run" if low > 0 else "")  # higher PSNR is better


def test_direction_follows_the_metric(tmp_path):
    a = [0.5, 0.4, 0.45, 0.6, 0.55, 0.5, 0.42, 0.48]
    b = [x - 0.2 for x in a]  # LPIPS down: the run is better
    ra, rb = _pair(tmp_path, a, b, metric="lpips")
    assert compare.paired(ra, rb, "lpips").better == "run"
    improved, regressed = compare.most_changed(ra, rb, "lpips", k=3)
    assert len(improved) == 3 and regressed == []
    ra, rb = _pair(tmp_path / "x", a, b, metric="psnr_hole")
    assert compare.paired(ra, rb, "psnr_hole").better == "reference"


def test_missing_values_are_left_out_pairwise_and_degenerate_cases_say_why(tmp_path):
    ra, rb = _pair(tmp_path, [1.0, None, 3.0, 4.0], [1.5, 2.0, None, 5.0])
    r = compare.paired(ra, rb, "psnr_hole")
    assert r.n == 2 and r.delta == pytest.approx(0.75)
    ra, rb = _pair(tmp_path / "same", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    r = compare.paired(ra, rb, "psnr_hole")
    assert r.wilcoxon_p is None and "all deltas are 0" in r.note and r.better == ""
    ra, rb = _pair(tmp_path / "none", [None, None], [1.0, 2.0])
    r = compare.paired(ra, rb, "psnr_hole")
    assert r.n == 0 and math.isnan(r.delta) and "no sample" in r.note


def test_runs_of_another_task_or_dataset_are_refused(tmp_path):
    a, b = _pair(tmp_path, [1.0, 2.0], [2.0, 3.0])
    b.run["dataset"] = {"fingerprint": "e" * 64}
    with pytest.raises(ValueError, match=r"differ in dataset fingerprint .*only runs of one task on the same samples"):
        compare.paired_table([a, b])
    t2i = make_run(tmp_path / "t", task="text2img", n=2)
    t2i.run["dataset"] = {"fingerprint": "f" * 64}
    with pytest.raises(ValueError, match="differ in task"):
        compare.check_comparable([a, t2i])
    with pytest.raises(ValueError, match="at least two runs"):
        compare.check_comparable([a])


def test_paired_table_rows_and_csv(tmp_path):
    a, b = _pair(tmp_path, [10.0, 11.0, 12.0, 13.0], [11.0, 12.5, 12.0, 14.0])
    table = compare.paired_table([a, b], output_dir=tmp_path / "out")
    (row,) = table.rows
    assert row["metric"] == "psnr_hole" and row["N pairs"] == 4 and row["mean delta [95% CI]"].startswith("0.875 [")
    assert (tmp_path / "out" / "paired.csv").read_text().splitlines()[0].startswith("run,metric,N pairs")


def test_set_metric_differences_are_unavailable_without_inception(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    a, b = _pair(tmp_path, [1.0, 2.0], [2.0, 3.0])
    (row,) = compare.set_metric_differences([a, b]).rows
    assert row["note"].startswith("unavailable: ") and "inception" in row["note"].lower()


def test_set_statistic_bootstrap_resamples_the_same_samples_in_every_run():
    rng = np.random.default_rng(0)
    real, f1, f2 = rng.normal(size=(30, 3)), rng.normal(size=(30, 3)), rng.normal(1, 1, size=(30, 3))
    stat = lambda f, r: float(np.abs(f.mean(0) - r.mean(0)).sum())  # a set statistic, as FID is
    values, boot = compare.bootstrap_set_statistic([f1, f2], real, stat, n_resamples=50, seed=7)
    assert values == [stat(f1, real), stat(f2, real)]
    draws = np.random.default_rng(7).integers(0, 30, size=(50, 30))
    literal = [[stat(f1[d], real[d]), stat(f2[d], real[d])] for d in draws]
    np.testing.assert_allclose(boot, literal, rtol=1e-12)
    low, high = compare.difference_ci(boot[:, 1] - boot[:, 0])
    assert 0 < low < high  # f2 is shifted away from the reference in every resample
    with pytest.raises(ValueError, match="same 30 samples"):
        compare.bootstrap_set_statistic([f1[:10]], real, stat, n_resamples=2)


def test_paired_csv_lands_relative_to_the_repository_whatever_the_working_directory(tmp_path, monkeypatch):
    from ldm_lab import report

    monkeypatch.setattr(report, "PROJECT_ROOT", tmp_path / "repo")
    monkeypatch.chdir(tmp_path)  # as nbval runs a notebook from notebooks/
    a, b = _pair(tmp_path, [10.0, 11.0], [11.0, 12.0])
    compare.paired_table([a, b], output_dir="reports/x")
    assert (tmp_path / "repo" / "reports" / "x" / "paired.csv").is_file() and not (tmp_path / "reports").exists()
    compare.paired_table([a, b], output_dir="ignored", run_id="r1")
    assert (tmp_path / "repo" / "reports" / "r1" / "paired.csv").is_file()
