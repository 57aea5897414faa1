"""Seed-compatible summaries: the files users of the older evaluation scripts look for (design §4).

Keys follow the older scripts (seed-toolkit §1.5, §2.5, §3.5). Values come from the same measurements as
metrics.json, mapped to the older definitions where one exists; an unavailable metric is null, never a
made-up fallback. metrics.json remains the reference (protocols, CIs, reasons).
"""

from __future__ import annotations

from ldm_lab.metrics.result import MetricResult
from ldm_lab.results import SampleRecord, superres_summary_name, write_json
from ldm_lab.tasks.run_dir import RunFolder

NOTE = "older-script keys; metrics.json holds every metric with its protocol, N, 95% CI or the reason it is unavailable"


def _value(summary: dict[str, MetricResult], name: str):
    m = summary.get(name)
    return m.value if m is not None and m.available else None


def _std(summary: dict[str, MetricResult], name: str):
    m = summary.get(name)
    return m.extra.get("std") if m is not None and m.available else None


def write_inpainting(folder: RunFolder, summary: dict[str, MetricResult], records: list[SampleRecord],
                     settings: dict, minutes: float) -> None:
    """evaluation_results.json: final_metrics, individual_results, evaluation_settings."""
    pairs = {"lpips": "lpips", "edge_consistency": "edge_consistency_outer_ring", "ssim": "ssim_rgb",
             "psnr": "psnr_rgb"}
    final = {"fid_score": _value(summary, "fid")}
    for old, new in pairs.items():
        final[f"{old}_mean"], final[f"{old}_std"] = _value(summary, new), _std(summary, new)
    final.update(total_samples=len(records), total_time_minutes=round(minutes, 3))
    individual = [{"filename": r.files["result"], "id": r.id,
                   **{old: r.metrics.get(new) for old, new in pairs.items()}} for r in records]
    write_json(folder.path("evaluation_results.json"), {
        "final_metrics": final, "individual_results": individual,
        "evaluation_settings": dict(settings, total_images_found=len(records), successful_samples=len(records)),
        "note": NOTE + "; edge_consistency here is the older outer-ring band, ssim/psnr whole-image RGB",
    })


def write_superres(folder: RunFolder, scale: int, summary: dict[str, MetricResult], n: int, dataset: str,
                   method: str, timestamp: str) -> None:
    """urban100_x{s}_results.json with the older keys (PSNR/SSIM now on Y with border crop = scale)."""
    out = {}
    if _value(summary, "fid") is not None:
        out["fid_score"] = _value(summary, "fid")
    out.update(precision=_value(summary, "precision"), recall=_value(summary, "recall"),
               visual_quality={"ssim": _value(summary, "ssim_y"), "psnr": _value(summary, "psnr_y"),
                               "lpips": _value(summary, "lpips")},
               edge_consistency=_value(summary, "edge_iou"), dataset=dataset, scale_factor=scale,
               num_images=n, method=method, timestamp=timestamp,
               note=NOTE + f"; ssim/psnr on BT.601 Y with a {scale}-pixel border crop, edge_consistency = edge IoU")
    write_json(folder.path(superres_summary_name(scale)), out)


def write_text2img(folder: RunFolder, summary: dict[str, MetricResult], real: dict[str, MetricResult],
                   records: list[SampleRecord], settings: dict, image_names: dict[int, str]) -> None:
    """evaluation_results.json (new) and the human-readable evaluation_results.txt of the older script."""
    head = {"fid": _value(summary, "fid"), "kid": _value(summary, "kid"),
            "precision": _value(summary, "precision"), "recall": _value(summary, "recall"),
            "clip_score_mean": _value(summary, "clip_cosine"), "clip_score_std": _std(summary, "clip_cosine"),
            "clipscore_mean": _value(summary, "clipscore"),
            "real_images_clip_score_mean": _value(real, "clip_cosine")}
    samples = [{"index": r.index + 1, "caption": r.caption, "original_image": image_names[r.index],
                "generated_image": r.files.get("result"), "clip_score": r.metrics.get("clip_cosine")}
               for r in records]
    write_json(folder.path("evaluation_results.json"),
               {"metrics": head, "settings": settings, "samples": samples, "note": NOTE})
    fmt = lambda v: "unavailable" if v is None else f"{v:.4f}"
    lines = ["Text-to-Image Evaluation Results", "=" * 50, f"Dataset: {settings['dataset_root']}",
             f"Number of samples: {len(records)}", f"Images saved ratio: {settings['save_images_ratio']}",
             f"Model config: {settings['config_path']}", f"Model checkpoint: {settings['model_path']}", "",
             "METRICS:", f"FID: {fmt(head['fid'])}", f"Precision: {fmt(head['precision'])}",
             f"Recall: {fmt(head['recall'])}", f"CLIP Score (mean): {fmt(head['clip_score_mean'])}",
             f"CLIP Score (std): {fmt(head['clip_score_std'])}",
             f"CLIP Score of the real images (mean): {fmt(head['real_images_clip_score_mean'])}", ""]
    for sample in samples:
        saved = sample["generated_image"] or "(not saved - controlled by save_images_ratio)"
        lines += [f"Sample {sample['index']:03d}", f"Caption: {sample['caption']}",
                  f"Original Image: {sample['original_image']}", f"Generated Image: {saved}",
                  f"CLIP Score: {fmt(sample['clip_score'])}", ""]
    from ldm_lab.data.files import write_bytes_atomic

    write_bytes_atomic(folder.path("evaluation_results.txt"), ("\n".join(lines) + "\n").encode("utf-8"))
