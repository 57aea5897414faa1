"""Quality ratings as the older scripts printed them (seed-toolkit §1.6, text2img README), table-driven.

These thresholds have no cited basis; they are kept so users of the older scripts find the same words.
"""

from __future__ import annotations

from ldm_lab.metrics.result import COL_CLIP_COSINE, COL_EDGE_CONSISTENCY, COL_LPIPS, COL_SSIM_RGB, KEY_FID

# metric -> (direction, ((threshold, label), ...), label below/above the last threshold).
RATING_TABLES: dict[str, tuple[str, tuple[tuple[float, str], ...], str]] = {
    KEY_FID: ("lower", ((30, "excellent"), (50, "very good"), (100, "good"), (200, "fair")), "poor"),
    COL_LPIPS: ("lower", ((0.1, "excellent"), (0.2, "good"), (0.4, "fair")), "poor"),
    COL_EDGE_CONSISTENCY: ("higher", ((0.8, "excellent"), (0.6, "good"), (0.4, "fair")), "poor"),
    COL_SSIM_RGB: ("higher", ((0.9, "excellent"), (0.7, "good"), (0.5, "fair")), "poor"),
    COL_CLIP_COSINE: ("higher", ((0.3, "excellent"), (0.25, "good"), (0.2, "fair")), "poor"),
}


def rate(metric: str, value: float | None) -> str:
    """Label for `value` (strict < for lower-is-better, strict > for higher-is-better, as the scripts did)."""
    if metric not in RATING_TABLES:
        raise ValueError(f"no rating table for {metric!r}; choose from {sorted(RATING_TABLES)}")
    if value is None:
        return "unavailable"
    direction, steps, last = RATING_TABLES[metric]
    for threshold, label in steps:
        if (value < threshold) if direction == "lower" else (value > threshold):
            return label
    return last
