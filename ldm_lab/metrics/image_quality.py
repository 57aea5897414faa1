"""PSNR and SSIM with an explicit protocol (SR literature: BT.601 Y, border crop = scale, range 255).

Inputs are uint8 HxWx3 arrays (rounded once, upstream). SSIM is Wang et al. (2004) with an 11x11
Gaussian window, sigma 1.5, population covariance and data range 255, via
`skimage.metrics.structural_similarity`, which with these settings equals the BasicSR/MATLAB SSIM.
Inpainting region metrics: PSNR over hole pixels only, SSIM on the hole's bounding-box crop.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from ldm_lab.metrics.result import (
    COL_PSNR_HOLE,
    COL_PSNR_RGB,
    COL_PSNR_Y,
    COL_SSIM_HOLE_BBOX,
    COL_SSIM_RGB,
    COL_SSIM_Y,
    MetricUnavailable,
)

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # skimage derives it from sigma: 2 * int(3.5 * 1.5 + 0.5) + 1
CHANNELS = ("y", "rgb")
# MATLAB rgb2ycbcr luma row (R, G, B in [0, 1]): Y = 16 + 65.481 R + 128.553 G + 24.966 B.
BT601_Y_OFFSET = 16.0
BT601_Y_COEFFS = (65.481, 128.553, 24.966)


def check_uint8_pair(a: np.ndarray, b: np.ndarray, *, names=("a", "b")) -> None:
    """Both HxWx3 uint8 with equal shapes; raises ValueError naming what is wrong."""
    for name, x in zip(names, (a, b), strict=True):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
            raise ValueError(
                f"`{name}` must be a uint8 numpy array (round once upstream), got "
                f"{type(x).__name__} {getattr(x, 'dtype', '')}"
            )
        if x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"`{name}` must be an HxWx3 RGB image, got shape {x.shape}")
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: `{names[0]}` {a.shape} vs `{names[1]}` {b.shape}")


def rgb_to_y(img: np.ndarray, *, rounded: bool = False) -> np.ndarray:
    """BT.601 luma on 0-255 as MATLAB rgb2ycbcr; float64 (BasicSR), or rounded like MATLAB's uint8."""
    rgb = np.asarray(img, dtype=np.float64) / 255.0
    y = BT601_Y_OFFSET + rgb @ np.asarray(BT601_Y_COEFFS)
    return np.round(y) if rounded else y


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    """Remove `border` pixels from every side (SR protocol: border = scale)."""
    if border < 0 or 2 * border >= min(img.shape[:2]):
        raise ValueError(
            f"`border` must be in [0, {min(img.shape[:2]) // 2}) for shape {img.shape}, got {border}"
        )
    return img[border : img.shape[0] - border, border : img.shape[1] - border] if border else img


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = DATA_RANGE) -> float:
    """PSNR = 10 log10(R² / MSE) in dB over all values; identical inputs give +inf (no cap)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return math.inf if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = DATA_RANGE) -> float:
    """SSIM (Wang et al. 2004), Gaussian 11x11 window, sigma 1.5; RGB = mean over channels."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise MetricUnavailable(
            f"image {a.shape[0]}x{a.shape[1]} is smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window"
        )
    return float(
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
            data_range=data_range,
            channel_axis=2 if a.ndim == 3 else None,
        )
    )


def psnr_ssim(
    result: np.ndarray, reference: np.ndarray, *, channel: str = "y", border: int = 0, y_rounded: bool = False
) -> dict[str, float]:
    """{psnr_<channel>, ssim_<channel>} of uint8 images under the protocol (channel, border crop)."""
    check_uint8_pair(result, reference, names=("result", "reference"))
    if channel == "y":
        result, reference = rgb_to_y(result, rounded=y_rounded), rgb_to_y(reference, rounded=y_rounded)
        keys = (COL_PSNR_Y, COL_SSIM_Y)
    elif channel == "rgb":
        keys = (COL_PSNR_RGB, COL_SSIM_RGB)
    else:
        raise ValueError(f"unknown channel {channel!r}; choose from {list(CHANNELS)}")
    result, reference = crop_border(result, border), crop_border(reference, border)
    return {keys[0]: psnr(result, reference), keys[1]: ssim(result, reference)}


def protocol_name(*, channel: str, border: int, y_rounded: bool = False) -> str:
    """Protocol string recorded with the values, e.g. 'y-bt601-float,crop4,range255,ssim-gauss11-s1.5'."""
    ch = ("y-bt601-uint8" if y_rounded else "y-bt601-float") if channel == "y" else "rgb"
    return f"{ch},crop{border},range255,ssim-gauss11-s1.5"


def hole_bbox(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding box (row slice, column slice) of the hole (mask True/non-zero)."""
    rows, cols = np.nonzero(np.asarray(mask))
    if rows.size == 0:
        raise MetricUnavailable("the mask has no hole pixels")
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def psnr_hole(result: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over hole pixels only (all channels); pixels outside the hole are ignored."""
    check_uint8_pair(result, reference, names=("result", "reference"))
    hole = _check_mask(mask, result.shape[:2])
    if not hole.any():
        raise MetricUnavailable("the mask has no hole pixels")
    return psnr(result[hole], reference[hole])


def ssim_hole_bbox(result: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """SSIM (RGB) on the crop given by the hole's bounding box."""
    check_uint8_pair(result, reference, names=("result", "reference"))
    rows, cols = hole_bbox(_check_mask(mask, result.shape[:2]))
    return ssim(result[rows, cols], reference[rows, cols])


def inpainting_region_metrics(
    result: np.ndarray, reference: np.ndarray, mask: np.ndarray
) -> tuple[dict[str, float | None], dict[str, str]]:
    """(values, reasons): whole-image psnr_rgb/ssim_rgb plus psnr_hole/ssim_hole_bbox.

    A metric undefined for this sample (empty hole, bbox smaller than the SSIM window) is None in
    `values` and its reason is in `reasons`.
    """
    check_uint8_pair(result, reference, names=("result", "reference"))
    metrics = {
        COL_PSNR_RGB: lambda: psnr(result, reference),
        COL_SSIM_RGB: lambda: ssim(result, reference),
        COL_PSNR_HOLE: lambda: psnr_hole(result, reference, mask),
        COL_SSIM_HOLE_BBOX: lambda: ssim_hole_bbox(result, reference, mask),
    }
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for key, fn in metrics.items():
        try:
            values[key] = fn()
        except MetricUnavailable as err:
            values[key], reasons[key] = None, str(err)
    return values, reasons


def _check_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"`mask` must have shape {tuple(shape)} (HxW), got {mask.shape}")
    return mask.astype(bool)
