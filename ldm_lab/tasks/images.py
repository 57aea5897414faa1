"""Image I/O of the runners: uint8 HxWx3 arrays <-> PNG files in the run folder (atomic writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldm_lab.data.files import save_image_atomic
from ldm_lab.metrics.image_io import read_image_uint8


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] from a uint8 source -> HxWx3 uint8 (exact: rounds v/255 * 255)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_png(root: Path, rel: str, image: np.ndarray) -> None:
    """HxWx3 uint8 (RGB) or HxW bool/uint8 (mask, saved as L with 255 = hole) -> root/rel, atomically."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    save_image_atomic(root / rel, Image.fromarray(np.ascontiguousarray(image)))


def read_png(root: Path, rel: str) -> np.ndarray:
    """HxWx3 uint8 of root/rel."""
    return read_image_uint8(root / rel)


def read_mask(root: Path, rel: str) -> np.ndarray:
    """HxW bool hole mask (white = hole) of root/rel."""
    with Image.open(root / rel) as im:
        return np.asarray(im.convert("L")) >= 128


def resize_antialiased(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL bicubic resize of uint8 RGB to (w, h): antialiased when shrinking (kernel stretched by the factor)."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC, reducing_gap=None))
