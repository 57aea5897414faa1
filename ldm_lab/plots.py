"""Matplotlib views of a run: per-sample metric distributions, worst-k / best-k sample grids, run comparisons.

Everything is drawn from what the runners returned (`RunResult`, `SampleRecord`, files under the run
folder). Figures are closed before they are returned, so a notebook shows each one exactly once.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ldm_lab.metrics.result import PER_SAMPLE_COLUMNS

LOWER_IS_BETTER = frozenset({"lpips", "lpips_hole_bbox", "fid", "kid"})  # all other metrics: higher is better
# Per-sample metric that orders the grids and the browser by default (first one with values wins).
DEFAULT_SORT = {
    "inpainting": ("lpips_hole_bbox", "psnr_hole", "ssim_hole_bbox", "edge_consistency"),
    "superres": ("lpips", "psnr_y", "ssim_y"),
    "text2img": ("clipscore", "clip_cosine"),
}
# Which image files a grid row shows, in order, and what they are called for each task.
ROLE_ORDER = {
    "inpainting": ("reference", "input", "result", "baseline"),
    "superres": ("input", "result", "baseline", "reference"),
    "text2img": ("result", "reference"),
}
ROLE_LABELS = {
    "inpainting": {"reference": "original", "input": "masked", "result": "inpainted", "baseline": "biharmonic"},
    "superres": {"input": "LR", "result": "SR", "baseline": "bicubic", "reference": "HR"},
    "text2img": {"result": "generated", "reference": "real image"},
}


def role_label(task: str, role: str) -> str:
    return ROLE_LABELS.get(task, {}).get(role, role)


def image_path(result, sample, role: str) -> Path | None:
    """File of `role` for `sample`; "baseline" is the result of the baseline sample with the same id."""
    rel = sample.files.get(role)
    if role == "baseline" and not rel:
        base = next((b for b in result.baseline_samples if b.id == sample.id), None)
        rel = base.files.get("result") if base else None
    path = Path(result.output_dir) / rel if rel else None
    return path if path is not None and path.is_file() else None


def has_role(result, role: str) -> bool:
    """Whether any sample of the run has a file for `role`."""
    if role == "baseline" and result.baseline_samples:
        return True
    return any(s.files.get(role) for s in result.samples)


def load_image(result, sample, role: str) -> np.ndarray | None:
    """uint8 HxWx3 of the sample's `role` file (relative to the run folder), or None when there is none."""
    path = image_path(result, sample, role)
    if path is None:
        return None
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def sample_metrics(result, *, baseline: bool = False) -> list[str]:
    """Per-sample metric columns with at least one value for the model's samples (or also the baseline's)."""
    names: dict[str, None] = {}
    for s in [*result.samples, *(result.baseline_samples if baseline else [])]:
        names.update({k: None for k, v in s.metrics.items() if is_number(v)})
    return list(names)


def default_metric(result) -> str | None:
    """The task's main per-sample metric, else the first one with values, else None."""
    available = sample_metrics(result)
    preferred = [m for m in DEFAULT_SORT.get(result.task, ()) if m in available]
    return (preferred or available or [None])[0]


def rank_samples(result, metric: str | None, *, worst: bool) -> list:
    """Samples ordered worst-first (or best-first) by `metric`; samples without a value go last."""
    if not metric:
        return list(result.samples)
    scored = [s for s in result.samples if is_number(s.metrics.get(metric))]
    unscored = [s for s in result.samples if not is_number(s.metrics.get(metric))]
    higher_first = (metric in LOWER_IS_BETTER) == worst
    return sorted(scored, key=lambda s: s.metrics[metric], reverse=higher_first) + unscored


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _unavailable_reasons(result) -> str:
    """Why the per-sample metrics of the model have no values (each reason spelled out once)."""
    model, lines, seen = result.metrics.get("model") or {}, [], {}
    for name in PER_SAMPLE_COLUMNS:
        reason = (model.get(name) or {}).get("unavailable") if isinstance(model.get(name), dict) else None
        if reason:
            lines.append(f"{name}: " + (f"as for {seen[reason]}" if reason in seen else reason))
            seen.setdefault(reason, name)
    return "\n".join(lines)


def _message_figure(text: str, title: str):
    """A figure that says why there is nothing to plot (so the report shows the reason, not a blank)."""
    lines = [wrapped for line in text.splitlines() for wrapped in textwrap.wrap(line, 120) or [""]]
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.2 * len(lines)))
    ax.axis("off")  # an Axes, so that notebooks render the figure (they skip figures without one)
    ax.set_title(title, fontsize=11, loc="left", weight="bold")
    ax.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=8, family="monospace", transform=ax.transAxes)
    plt.close(fig)
    return fig


def metric_distributions(result, metrics: list[str] | None = None):
    """Histogram of each per-sample metric (model, and the baseline of the same run when any)."""
    names = list(metrics or sample_metrics(result, baseline=True))
    if not names:
        reasons = _unavailable_reasons(result)
        return _message_figure(reasons or "no per-sample metric was computed for this run",
                               f"{result.task}: no per-sample metric values")
    cols = min(3, len(names))
    fig, axes = plt.subplots(math.ceil(len(names) / cols), cols, figsize=(4 * cols, 3 * math.ceil(len(names) / cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        groups = {label: [s.metrics[name] for s in samples if is_number(s.metrics.get(name))]
                  for label, samples in (("model", result.samples), ("baseline", result.baseline_samples))}
        every = [v for values in groups.values() for v in values]
        bins = np.histogram_bin_edges(every, bins=min(20, max(5, len(every))))
        for label, values in groups.items():
            if values:
                ax.hist(values, bins=bins, alpha=0.6, label=f"{label} (N={len(values)})")
        ax.set_title(name + (" (lower is better)" if name in LOWER_IS_BETTER else ""), fontsize=10)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{result.task}: per-sample metric distributions", fontsize=11)
    fig.tight_layout()
    plt.close(fig)
    return fig


def sample_grid(result, metric: str = "", k: int = 4, *, worst: bool = True):
    """The k worst (or best) samples by `metric` ("" = the task's main metric): input, result, reference..."""
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}")
    if metric and metric not in sample_metrics(result):
        raise ValueError(f"no per-sample values for metric {metric!r}; choose from {sample_metrics(result)}")
    metric = metric or default_metric(result)
    chosen = rank_samples(result, metric, worst=worst)[:k]
    if not chosen:
        return _message_figure("the run has no samples", f"{result.task}: nothing to show")
    roles = [r for r in ROLE_ORDER.get(result.task, ("input", "result", "reference")) if has_role(result, r)]
    fig, axes = plt.subplots(len(chosen), len(roles), figsize=(2.6 * len(roles), 2.8 * len(chosen)), squeeze=False)
    for row, sample in zip(axes, chosen, strict=True):
        for ax, role in zip(row, roles, strict=True):
            image = load_image(result, sample, role)
            if image is not None:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(role_label(result.task, role), fontsize=9)
        value = sample.metrics.get(metric) if metric else None
        score = f"\n{metric}={value:.4g}" if is_number(value) else ""
        row[0].set_ylabel(f"{sample.id}{score}", fontsize=8)
    if metric:
        title = f"{'worst' if worst else 'best'} {len(chosen)} by {metric}"
    else:
        title = f"first {len(chosen)} samples (no per-sample metric to rank by; see the metric table)"
    fig.suptitle(textwrap.fill(f"{result.task}: {title}", 28 * len(roles)), fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _entry(result, name: str) -> dict | None:
    """metrics.json entry of the model's `name` when it has a finite value (else None)."""
    entry = (result.metrics.get("model") or {}).get(name)
    return entry if isinstance(entry, dict) and is_number(entry.get("value")) else None


def _errorbar(ax, x, y, entries, fmt: str):
    lo = [e["value"] - e["ci95"][0] if e.get("ci95") else 0 for e in entries]
    hi = [e["ci95"][1] - e["value"] if e.get("ci95") else 0 for e in entries]
    ax.errorbar(x, y, yerr=[lo, hi], fmt=fmt, capsize=3)


def compare_metrics(results: list, param: str = "", metrics: list[str] | None = None):
    """Each metric (with its 95% CI) across runs: against run.json `param` (e.g. `scale`), else run order."""
    from ldm_lab.report import run_value

    names = metrics or list(dict.fromkeys(n for r in results for n in (r.metrics.get("model") or {})
                                          if _entry(r, n)))
    if not names:
        return _message_figure("no metric has a value in any of these runs", "comparison")
    cols = min(3, len(names))
    fig, axes = plt.subplots(math.ceil(len(names) / cols), cols, figsize=(4.2 * cols, 3.2 * math.ceil(len(names) / cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        runs = [(i, r) for i, r in enumerate(results) if _entry(r, name)]
        numeric = bool(param) and all(is_number(run_value(r, param)) for _, r in runs)
        if numeric:  # a line over the parameter's values
            runs.sort(key=lambda ir: run_value(ir[1], param))
        xs = [run_value(r, param) for _, r in runs] if numeric else [i + 1 for i, _ in runs]
        entries = [_entry(r, name) for _, r in runs]
        _errorbar(ax, xs, [e["value"] for e in entries], entries, fmt="o-" if numeric else "o")
        labels = [str(run_value(r, param)) if param else Path(r.output_dir).name for _, r in runs]
        ax.set_xticks(xs, labels, fontsize=7, rotation=15)
        if not numeric:
            ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(param or "run", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"metrics across {len(results)} runs (95% CI)", fontsize=11)
    fig.tight_layout()
    plt.close(fig)
    return fig


def metric_tradeoff(results: list, x_metric: str = "fid", y_metric: str = "clip_cosine"):
    """`y_metric` against `x_metric` across runs (e.g. FID vs CLIP over guidance scales), one point per run."""
    from ldm_lab.report import run_label

    runs = [r for r in results if _entry(r, x_metric) and _entry(r, y_metric)]
    if not runs:
        why: dict[str, list[str]] = {}
        for r in results:
            for m in (x_metric, y_metric):
                if not _entry(r, m):
                    reason = ((r.metrics.get("model") or {}).get(m) or {}).get("unavailable") or "not computed"
                    why.setdefault(f"{m}: {reason}", []).append(Path(r.output_dir).name)
        text = "\n".join(f"{k} [{', '.join(v)}]" for k, v in why.items())
        return _message_figure(text, f"{y_metric} vs {x_metric}: no run has both")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in runs:
        ex, ey = _entry(r, x_metric), _entry(r, y_metric)
        xerr = [[ex["value"] - ex["ci95"][0]], [ex["ci95"][1] - ex["value"]]] if ex.get("ci95") else None
        yerr = [[ey["value"] - ey["ci95"][0]], [ey["ci95"][1] - ey["value"]]] if ey.get("ci95") else None
        ax.errorbar([ex["value"]], [ey["value"]], xerr=xerr, yerr=yerr, fmt="o", capsize=3)
        ax.annotate(run_label(r, results), (ex["value"], ey["value"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel(x_metric)
    ax.set_ylabel(y_metric)
    ax.set_title(f"{y_metric} vs {x_metric} ({len(runs)} runs)", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
