"""Measuring a run from its PNGs (streamed: one image pair in memory at a time, plus the feature matrices).

Pretrained metric networks (Inception for FID/KID, VGG16 for precision/recall, AlexNet for LPIPS, CLIP)
resolve offline through `ldm_lab.weights`; one that is absent makes its metrics unavailable with the
reason and the `ldm-lab weights` hint, never a number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ldm_lab.metrics.accumulator import PerSampleAccumulator
from ldm_lab.metrics.fid import fid_result
from ldm_lab.metrics.kid import kid_result
from ldm_lab.metrics.precision_recall import precision_recall_results
from ldm_lab.metrics.result import (
    KEY_FID,
    KEY_KID,
    KEY_PRECISION,
    KEY_RECALL,
    MetricResult,
    MetricUnavailable,
)
from ldm_lab.results import SampleRecord

WEIGHTS_HINT = "see `ldm-lab weights status`; fetch with `ldm-lab weights fetch`"
RESIZE_MODE = "tf1-bilinear"  # torch-fidelity's own resize, as the LDM paper's FIDs


class MetricModels:
    """Metric networks built on first use; `get(kind)` is None when unavailable, `reasons[kind]` says why.

    Args:
        metric_weights: explicit files by name: "inception-fid", "vgg16", "alexnet", "lpips-alex-lin",
            "clip" (the open_clip weights for `clip_model`); others resolve through `ldm_lab.weights`.
    """

    KINDS = ("inception", "vgg16", "lpips", "clip")

    def __init__(self, device: torch.device, metric_weights: dict | None = None, *,
                 clip_model: str = "ViT-B-32", clip_pretrained: str = "openai"):
        self.device = device
        self.paths = dict(metric_weights or {})
        self.clip_model, self.clip_pretrained = clip_model, clip_pretrained
        self._built: dict[str, object] = {}
        self.reasons: dict[str, str] = {}

    def _build(self, kind: str):
        w = self.paths
        if kind in ("inception", "vgg16"):
            from ldm_lab.metrics.fidelity_features import build_extractor

            return build_extractor(kind, w.get("inception-fid" if kind == "inception" else "vgg16"),
                                   device=self.device)
        if kind == "lpips":
            from ldm_lab.metrics.lpips_metric import build_lpips

            return build_lpips("alex", w.get("alexnet"), w.get("lpips-alex-lin"), device=self.device)
        from ldm_lab.metrics.clip_score import build_clip

        return build_clip(self.clip_model, self.clip_pretrained or None, w.get("clip"), device=self.device)

    def get(self, kind: str):
        if kind not in self.KINDS:
            raise ValueError(f"unknown metric network {kind!r}; choose from {list(self.KINDS)}")
        if kind not in self._built and kind not in self.reasons:
            try:
                self._built[kind] = self._build(kind)
            except (FileNotFoundError, ValueError) as err:
                reason = str(err)
                self.reasons[kind] = reason if "ldm-lab weights" in reason else f"{reason} ({WEIGHTS_HINT})"
        return self._built.get(kind)


def per_sample_metrics(samples: list[SampleRecord], compute: Callable[[SampleRecord], tuple[dict, dict]],
                       columns: list[str], *, protocols: dict[str, str], unavailable: dict[str, str],
                       progress: bool = True, desc: str = "metrics") -> tuple[list[dict], dict[str, MetricResult]]:
    """Per-sample values (stored on each record), CSV rows, and means with bootstrap CIs.

    `compute(record) -> (values, reasons)` reads the record's files; columns in `unavailable` (a network
    is missing) are None in every row and reported as unavailable with that reason.
    """
    acc = PerSampleAccumulator(columns)
    for record in tqdm(samples, desc=desc, unit="img", disable=not progress):
        values, reasons = compute(record)
        values = {c: (None if c in unavailable else values.get(c)) for c in columns}
        reasons = {**reasons, **unavailable}
        acc.add(record.id, record.files.get("result", ""), values, reasons)
        record.metrics = {c: acc.rows[-1][c] for c in columns}
    summary = acc.summary(protocols)
    for column, reason in unavailable.items():
        if column in summary:
            summary[column] = MetricResult.missing(column, reason, protocol=protocols.get(column, ""))
    return acc.csv_rows(), summary


def guarded(fn: Callable[[], float], name: str, values: dict, reasons: dict) -> None:
    """values[name] = fn(), or None with the reason when the metric is undefined for this sample."""
    try:
        values[name] = fn()
    except MetricUnavailable as err:
        values[name], reasons[name] = None, str(err)


def reference_key(*parts) -> str:
    """Cache key of a reference set: dataset fingerprint + how the references were preprocessed."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()


def _features(extractor, paths: list[Path]):
    from ldm_lab.metrics.fidelity_features import extract_features
    from ldm_lab.metrics.image_io import iter_images_uint8

    return extract_features(iter_images_uint8(paths), extractor, resize_mode=RESIZE_MODE)


def _reference(extractor, paths: list[Path], key: str):
    from ldm_lab.metrics.cache import reference_features

    return reference_features(paths, extractor, resize_mode=RESIZE_MODE, dataset_fingerprint=key)[0]


def distribution_results(models: MetricModels, fake: list[Path], real: list[Path], *, real_key: str,
                         note: str, precision_recall: bool = True) -> dict[str, MetricResult]:
    """FID and KID (Inception) and, if asked, precision/recall (VGG16) of generated vs reference images.

    Reference features go through the on-disk cache keyed by `real_key`; `note` (what the two sets are)
    is appended to every protocol string.
    """
    from ldm_lab.metrics.fidelity_features import feature_protocol

    out: dict[str, MetricResult] = {}
    inception = models.get("inception")
    if inception is None:
        out.update({k: MetricResult.missing(k, models.reasons["inception"]) for k in (KEY_FID, KEY_KID)})
    else:
        protocol = f"{feature_protocol(inception, RESIZE_MODE)}; {note}"
        fake_f, real_f = _features(inception, fake), _reference(inception, real, real_key)
        for key, fn in ((KEY_FID, fid_result), (KEY_KID, kid_result)):
            try:
                out[key] = fn(fake_f, real_f, protocol=protocol)
            except ValueError as err:  # e.g. sqrtm with a large imaginary part on tiny N
                out[key] = MetricResult.missing(key, str(err), protocol=protocol, n=min(len(fake_f), len(real_f)))
    if precision_recall:
        vgg = models.get("vgg16")
        if vgg is None:
            out.update({k: MetricResult.missing(k, models.reasons["vgg16"]) for k in (KEY_PRECISION, KEY_RECALL)})
        else:
            protocol = f"{feature_protocol(vgg, RESIZE_MODE)},k=3; {note}"
            out.update(precision_recall_results(_features(vgg, fake), _reference(vgg, real, real_key),
                                                protocol=protocol))
    return out


def model_and_baseline(folder, plan: list, compute: Callable[[SampleRecord], tuple[dict, dict]], columns: list[str],
                       *, protocols: dict[str, str], unavailable: dict[str, str], models: MetricModels,
                       real_key: str, fid: bool, notes: dict[str, str], precision_recall: bool = True,
                       progress: bool = True) -> dict[str, tuple[list[dict], dict[str, MetricResult]]]:
    """Per-sample metrics (`per_sample_metrics`), then FID/KID (and precision/recall) against the plan's
    references, for the model's results and for the baseline's: {"model": (rows, summary), "baseline": ...}.
    `notes[system]` says what the two image sets are (appended to the distribution metrics' protocols)."""
    real = [folder.path(p.record.files["reference"]) for p in plan]
    names = [KEY_FID, KEY_KID, *([KEY_PRECISION, KEY_RECALL] if precision_recall else [])]
    outcome = {}
    for system, records in (("model", [p.record for p in plan]), ("baseline", [p.baseline for p in plan])):
        rows, summary = per_sample_metrics(records, compute, columns, protocols=protocols, unavailable=unavailable,
                                           progress=progress, desc=f"metrics ({system})")
        fake = [folder.path(r.files["result"]) for r in records]
        summary.update(distribution_results(models, fake, real, real_key=real_key, note=notes[system],
                                            precision_recall=precision_recall) if fid else disabled(names, "fid"))
        outcome[system] = (rows, summary)
    return outcome


def disabled(names: list[str], flag: str) -> dict[str, MetricResult]:
    """Metrics switched off by the caller, reported as such."""
    return {n: MetricResult.missing(n, f"disabled ({flag}=False)") for n in names}
