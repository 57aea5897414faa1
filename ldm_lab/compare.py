"""Paired comparison of runs of one task on the same samples: which run is better, by how much, how sure.

Two runs are comparable only if they evaluate the same task on the same dataset (run.json
`dataset.fingerprint`) and, for the pairs, the same sample ids; `check_comparable` refuses anything else,
naming the runs and the difference. For every per-sample metric each run is compared with the reference
run (the first) on the samples both have a value for:

- delta = run − reference per sample; its mean with a *paired* percentile bootstrap 95% CI (the same
  resampled sample indices for both runs, 1000 resamples, seeded);
- the Wilcoxon signed-rank test of the deltas (`scipy.stats.wilcoxon`, two-sided, zero deltas dropped as
  in Wilcoxon's original method, exact or normal approximation by scipy's default rule).

FID/KID are set statistics: their difference gets a bootstrap over samples (the same resampled sample
indices for both runs' features and the shared reference features; 100 resamples, as the runs' own
CIs), computed from Inception features of the PNGs on disk (`paired_distribution_table`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldm_lab.metrics.bootstrap import CONFIDENCE, SEED, bootstrap_ci
from ldm_lab.plots import LOWER_IS_BETTER, is_number, sample_metrics
from ldm_lab.report import Table, output_folder, run_label

FID_RESAMPLES = 100


def check_comparable(results: list) -> None:
    """ValueError unless every run has the task and dataset fingerprint of the first one."""
    if len(results) < 2:
        raise ValueError(f"a paired comparison needs at least two runs, got {len(results)}")
    first = results[0]
    for other in results[1:]:
        for what, get in (("task", lambda r: r.task),
                          ("dataset fingerprint", lambda r: (r.run.get("dataset") or {}).get("fingerprint"))):
            if get(other) != get(first):
                raise ValueError(f"runs {first.output_dir} and {other.output_dir} differ in {what} "
                                 f"({get(first)!r} vs {get(other)!r}): only runs of one task on the same samples "
                                 "are compared sample by sample")


@dataclass(frozen=True)
class Paired:
    """One metric, one run against the reference run, over the samples both measured."""

    metric: str
    n: int
    reference_mean: float
    mean: float
    delta: float
    ci95: tuple[float, float] | None
    wilcoxon_p: float | None
    note: str = ""

    @property
    def better(self) -> str:
        """"run", "reference" or "" (CI includes 0): who is better by the CI of the mean delta."""
        if self.ci95 is None or self.ci95[0] <= 0 <= self.ci95[1]:
            return ""
        lower = self.metric in LOWER_IS_BETTER
        return "run" if (self.delta < 0) == lower else "reference"


def paired_deltas(reference, run, metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, reference values, run values) of the samples with a finite value in both runs."""
    ref = {s.id: s.metrics.get(metric) for s in reference.samples}
    ids, a, b = [], [], []
    for s in run.samples:
        x, y = ref.get(s.id), s.metrics.get(metric)
        if is_number(x) and is_number(y) and math.isfinite(x) and math.isfinite(y):
            ids.append(s.id)
            a.append(float(x))
            b.append(float(y))
    return ids, np.asarray(a), np.asarray(b)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> tuple[float | None, str]:
    """Two-sided Wilcoxon signed-rank p-value of b − a, or (None, why)."""
    from scipy.stats import wilcoxon

    d = b - a
    if np.count_nonzero(d) == 0:
        return None, "all deltas are 0"
    if len(d) < 2:
        return None, "fewer than 2 pairs"
    return float(wilcoxon(b, a, zero_method="wilcox", alternative="two-sided").pvalue), ""


def paired(reference, run, metric: str) -> Paired:
    ids, a, b = paired_deltas(reference, run, metric)
    if not ids:
        return Paired(metric, 0, math.nan, math.nan, math.nan, None, None, "no sample with a value in both runs")
    p, why = wilcoxon_p(a, b)
    ci = bootstrap_ci(b - a) if len(ids) > 1 else None  # resampling the deltas keeps each pair together
    return Paired(metric, len(ids), float(a.mean()), float(b.mean()), float((b - a).mean()), ci, p,
                  why if ci else "one pair: no CI")


def paired_table(results: list, *, output_dir: str | Path = "", run_id: str = "") -> Table:
    """Every per-sample metric of every run against the first run: means, mean delta [paired 95% CI],
    Wilcoxon p and which run the CI favours; written to paired.csv when a folder is given (as
    `report.compare_table`: reports/<run_id>, else `output_dir`, relative to the repository)."""
    check_comparable(results)
    reference, labels = results[0], [run_label(r, results) for r in results]
    rows = []
    for label, run in zip(labels[1:], results[1:], strict=True):
        for metric in sample_metrics(reference):
            r = paired(reference, run, metric)
            rows.append({
                "run": label, "metric": metric + (" ↓" if metric in LOWER_IS_BETTER else ""), "N pairs": r.n,
                "reference mean": _f(r.reference_mean), "run mean": _f(r.mean),
                "mean delta [95% CI]": _f(r.delta) + (f" [{_f(r.ci95[0])}, {_f(r.ci95[1])}]" if r.ci95 else ""),
                "Wilcoxon p": "" if r.wilcoxon_p is None else f"{r.wilcoxon_p:.3g}",
                "better (CI)": {"run": label, "reference": labels[0], "": "—"}[r.better], "note": r.note})
    header = ["run", "metric", "N pairs", "reference mean", "run mean", "mean delta [95% CI]", "Wilcoxon p",
              "better (CI)", "note"]
    table = Table(f"paired per-sample differences against {labels[0]} (delta = run − reference)", header, rows)
    folder = output_folder(output_dir, run_id)
    if folder is not None:
        table.to_csv(folder / "paired.csv")
    return table


def _f(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def most_changed(reference, run, metric: str, k: int = 4) -> tuple[list[str], list[str]]:
    """(ids that improved most, ids that regressed most) by the metric's own direction, at most k each."""
    ids, a, b = paired_deltas(reference, run, metric)
    gain = (a - b) if metric in LOWER_IS_BETTER else (b - a)
    order = np.argsort(-gain, kind="stable")
    improved = [ids[i] for i in order[:k] if gain[i] > 0]
    regressed = [ids[i] for i in order[::-1][:k] if gain[i] < 0]
    return improved, regressed


def bootstrap_set_statistic(features: list[np.ndarray], real: np.ndarray, statistic, *, n_resamples: int,
                            seed: int = SEED) -> tuple[list[float], np.ndarray]:
    """(statistic of each run's features vs `real`, [n_resamples, runs] of the same on resampled samples).

    Row i of every array is one sample, so each resample draws sample indices once and applies them to every
    run's features and to `real`: the runs stay paired through their samples."""
    n = len(real)
    if any(len(f) != n for f in features):
        raise ValueError(f"every run needs features of the same {n} samples, got {[len(f) for f in features]}")
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    values = [float(statistic(f, real)) for f in features]
    return values, np.array([[statistic(f[d], real[d]) for f in features] for d in draws], dtype=np.float64)


def difference_ci(differences: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(differences, [alpha, 1 - alpha])
    return float(low), float(high)


def set_metric_differences(results: list, *, metric_weights: dict | None = None, device: str = "cpu",
                           n_resamples: int = FID_RESAMPLES, seed: int = SEED) -> Table:
    """FID and KID of every run minus the reference run's, over the samples all runs share, with a bootstrap
    over samples: each resample draws sample indices once and uses them for both runs' features and the
    reference features (the runs are paired through their samples). Unavailable, with the reason, without
    the Inception weights."""
    import torch

    from ldm_lab.metrics.fid import fid_from_features
    from ldm_lab.metrics.kid import kid_from_features
    from ldm_lab.plots import image_path
    from ldm_lab.tasks.measure import MetricModels, _features

    check_comparable(results)
    labels = [run_label(r, results) for r in results]
    header = ["run", "metric", "N", "reference value", "run value", "difference [95% CI]", "better (CI)", "note"]
    title = f"FID/KID differences against {labels[0]} (run − reference; bootstrap over samples)"
    models = MetricModels(torch.device(device), metric_weights)
    inception = models.get("inception")
    if inception is None:
        return Table(title, header, [{"run": "all", "metric": "fid, kid", "note": "unavailable: " + models.reasons["inception"]}])
    shared = set.intersection(*({s.id for s in r.samples if image_path(r, s, "result")} for r in results))
    ids = [s.id for s in results[0].samples if s.id in shared]
    by_id = [{s.id: s for s in r.samples} for r in results]
    reals = [image_path(results[0], by_id[0][i], "reference") for i in ids]
    if not ids or any(p is None for p in reals):
        return Table(title, header, [{"run": "all", "metric": "fid, kid", "note": "unavailable: no shared samples with "
                                      "result and reference images"}])
    real = _features(inception, reals)
    feats = [_features(inception, [image_path(r, m[i], "result") for i in ids]) for r, m in zip(results, by_id, strict=True)]
    rows = []
    for name, fn in (("fid", fid_from_features), ("kid", lambda f, r: kid_from_features(f, r)[0])):
        try:
            values, boot = bootstrap_set_statistic(feats, real, fn, n_resamples=n_resamples, seed=seed)
        except ValueError as err:  # e.g. too few samples for the statistic
            rows.append({"run": "all", "metric": name, "N": len(ids), "note": f"unavailable: {err}"})
            continue
        for k in range(1, len(results)):
            low, high = difference_ci(boot[:, k] - boot[:, 0])
            better = "—" if low <= 0 <= high else (labels[k] if high < 0 else labels[0])
            rows.append({"run": labels[k], "metric": name + " ↓", "N": len(ids), "reference value": _f(values[0]),
                         "run value": _f(values[k]), "difference [95% CI]": f"{_f(values[k] - values[0])} "
                         f"[{_f(low)}, {_f(high)}]", "better (CI)": better,
                         "note": f"{n_resamples} resamples"})
    return Table(title, header, rows)


def changed_grid(reference, run, metric: str = "", k: int = 3):
    """The samples `run` improved most and regressed most against `reference` by `metric` ("" = the task's main
    metric): each row shows the reference run's result, this run's result and the ground truth (if any)."""
    import matplotlib.pyplot as plt

    from ldm_lab.plots import _message_figure, default_metric, load_image

    check_comparable([reference, run])
    metric = metric or default_metric(reference) or ""
    if not metric:
        return _message_figure("no per-sample metric in these runs", "most changed samples")
    improved, regressed = most_changed(reference, run, metric, k)
    rows = [("improved", i) for i in improved] + [("regressed", i) for i in regressed]
    if not rows:
        return _message_figure(f"no sample changed in {metric}", "most changed samples")
    ref_by, run_by = {s.id: s for s in reference.samples}, {s.id: s for s in run.samples}
    a_label, b_label = run_label(reference, [reference, run]), run_label(run, [reference, run])
    columns = [(a_label, reference, ref_by, "result"), (b_label, run, run_by, "result"),
               ("reference image", reference, ref_by, "reference")]
    fig, axes = plt.subplots(len(rows), 3, figsize=(8, 2.7 * len(rows)), squeeze=False)
    for ax_row, (kind, sample_id) in zip(axes, rows, strict=True):
        for ax, (title, result, by, role) in zip(ax_row, columns, strict=True):
            image = load_image(result, by[sample_id], role)
            if image is not None:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
        x, y = ref_by[sample_id].metrics.get(metric), run_by[sample_id].metrics.get(metric)
        ax_row[0].set_ylabel(f"{kind}: {sample_id}\n{metric} {x:.4g} → {y:.4g}", fontsize=8)
    fig.suptitle(f"most improved and regressed by {metric}{' (lower is better)' if metric in LOWER_IS_BETTER else ''}",
                 fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
