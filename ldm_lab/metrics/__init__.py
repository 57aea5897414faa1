"""ldm-lab metrics: exact FID/KID/precision-recall, LPIPS, PSNR/SSIM protocols, edge metrics, CLIP score,
bootstrap CIs and a feature cache, on torch-fidelity, lpips, open_clip and scikit-image.

Three stages stay apart (STYLE 15): I/O (`image_io`), features (`fidelity_features`, `cache`), and
statistics (`fid`, `kid`, `precision_recall`, `image_quality`, `edges`, `bootstrap`). Heavy modules
(`lpips_metric`, `clip_score`) are imported on use.
"""

from ldm_lab.metrics.bootstrap import bootstrap_ci, bootstrap_ci_two_sample, summarize_per_sample
from ldm_lab.metrics.edges import edge_consistency, edge_consistency_outer_ring, edge_iou
from ldm_lab.metrics.fid import fid_features_to_statistics, fid_from_features, fid_result, frechet_distance
from ldm_lab.metrics.image_quality import (
    inpainting_region_metrics,
    psnr,
    psnr_hole,
    psnr_ssim,
    rgb_to_y,
    ssim,
    ssim_hole_bbox,
)
from ldm_lab.metrics.kid import kid_from_features, kid_result
from ldm_lab.metrics.precision_recall import precision_recall_from_features, precision_recall_results
from ldm_lab.metrics.ratings import rate
from ldm_lab.metrics.result import PER_SAMPLE_COLUMNS, MetricResult, MetricUnavailable

__all__ = [
    "PER_SAMPLE_COLUMNS",
    "MetricResult",
    "MetricUnavailable",
    "bootstrap_ci",
    "bootstrap_ci_two_sample",
    "edge_consistency",
    "edge_consistency_outer_ring",
    "edge_iou",
    "fid_features_to_statistics",
    "fid_from_features",
    "fid_result",
    "frechet_distance",
    "inpainting_region_metrics",
    "kid_from_features",
    "kid_result",
    "precision_recall_from_features",
    "precision_recall_results",
    "psnr",
    "psnr_hole",
    "psnr_ssim",
    "rate",
    "rgb_to_y",
    "ssim",
    "ssim_hole_bbox",
    "summarize_per_sample",
]
