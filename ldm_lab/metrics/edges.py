"""Edge metrics: inpainting edge consistency (seam band) and SR edge IoU (design §9).

Settled conventions: gray = BT.601 luma 0.299 R + 0.587 G + 0.114 B on 0-255 (float, not rounded);
3x3 Sobel magnitude with mirrored borders (OpenCV's BORDER_REFLECT_101), clipped to 255; mask
morphology with `scipy.ndimage`, pixels outside the image count as not-hole.

- `edge_consistency`: band that straddles the hole boundary, dilate(hole, r) minus erode(hole, r) with
  a (2r+1)x(2r+1) square (r=2), so it holds generated pixels as well as known ones.
- `edge_consistency_outer_ring`: the older scripts' band, dilate(hole, 5x5) minus hole: a 2-pixel ring
  outside the hole, where the composite equals the original (its distance-2 pixels can never differ,
  by construction). Reported for comparability only, with the same clipped-magnitude formula, so it is
  not bit-identical to the older scripts (they left magnitudes unclipped, up to ~1442, and used uint8 gray).
- `edge_iou`: IoU of `skimage.feature.canny` edge maps of the BT.601 Y channel scaled to 0-1
  (Canny thresholds are absolute for float input), sigma 1.0, default thresholds.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import canny

from ldm_lab.metrics.image_quality import check_uint8_pair, rgb_to_y
from ldm_lab.metrics.result import MetricUnavailable

GRAY_COEFFS = (0.299, 0.587, 0.114)
SOBEL_CLIP = 255.0
BAND_RADIUS = 2
OUTER_RING_SIZE = 5
CANNY_SIGMA = 1.0


def gray_bt601(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on 0-255 in float64 (OpenCV RGB2GRAY weights, not rounded)."""
    return np.asarray(img, np.float64) @ np.asarray(GRAY_COEFFS)


def sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    """sqrt(Sx² + Sy²) of the 3x3 Sobel derivatives, clipped to 255."""
    gx = ndimage.sobel(gray, axis=1, mode="mirror")
    gy = ndimage.sobel(gray, axis=0, mode="mirror")
    return np.minimum(np.hypot(gx, gy), SOBEL_CLIP)


def straddling_band(hole: np.ndarray, radius: int = BAND_RADIUS) -> np.ndarray:
    """dilate(hole) minus erode(hole) with a (2r+1)² square; outside the image counts as not-hole."""
    if radius < 1:
        raise ValueError(f"`radius` must be >= 1, got {radius}")
    square = np.ones((2 * radius + 1, 2 * radius + 1), dtype=bool)
    return ndimage.binary_dilation(hole, square) & ~ndimage.binary_erosion(hole, square)


def outer_ring(hole: np.ndarray, size: int = OUTER_RING_SIZE) -> np.ndarray:
    """dilate(hole) with a size² square minus the hole: the older scripts' band."""
    return ndimage.binary_dilation(hole, np.ones((size, size), dtype=bool)) & ~hole


def band_edge_consistency(result: np.ndarray, reference: np.ndarray, band: np.ndarray) -> float:
    """1 - mean over the band of |Sobel(result) - Sobel(reference)| / 255, clipped to [0, 1]."""
    if not band.any():
        raise MetricUnavailable("the edge band is empty (no hole, or the hole covers the whole image)")
    diff = np.abs(sobel_magnitude(gray_bt601(result)) - sobel_magnitude(gray_bt601(reference)))
    return float(np.clip(1.0 - diff[band].mean() / SOBEL_CLIP, 0.0, 1.0))


def edge_consistency(
    result: np.ndarray, reference: np.ndarray, mask: np.ndarray, *, radius: int = BAND_RADIUS
):
    """Edge consistency on the band straddling the hole boundary (higher = smoother blend)."""
    return band_edge_consistency(result, reference, straddling_band(_hole(result, reference, mask), radius))


def edge_consistency_outer_ring(result: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Edge consistency on the older scripts' 2-pixel ring outside the hole (comparability only)."""
    return band_edge_consistency(result, reference, outer_ring(_hole(result, reference, mask)))


def canny_edges(img: np.ndarray) -> np.ndarray:
    """Canny edge map of the BT.601 Y channel on a 0-1 scale (sigma 1.0, skimage default thresholds)."""
    return canny(rgb_to_y(img) / 255.0, sigma=CANNY_SIGMA)


def edge_iou(result: np.ndarray, reference: np.ndarray) -> float:
    """|E_result ∩ E_reference| / |E_result ∪ E_reference| of Canny edge maps."""
    check_uint8_pair(result, reference, names=("result", "reference"))
    a, b = canny_edges(result), canny_edges(reference)
    union = np.logical_or(a, b).sum()
    if union == 0:
        raise MetricUnavailable("neither image has Canny edges, so edge IoU is undefined")
    return float(np.logical_and(a, b).sum() / union)


def _hole(result: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    check_uint8_pair(result, reference, names=("result", "reference"))
    mask = np.asarray(mask)
    if mask.shape != result.shape[:2]:
        raise ValueError(f"`mask` must have shape {result.shape[:2]} (HxW), got {mask.shape}")
    return mask.astype(bool)
