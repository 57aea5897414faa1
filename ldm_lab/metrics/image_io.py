"""I/O stage: image files -> HxWx3 uint8 arrays, one at a time (design §9 mode conversions).

A small reader so metrics can run on any folder of images; dataset layouts live in `ldm_lab.data`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ldm_lab.data.images import load_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_image_uint8(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB, decoded by `ldm_lab.data.load_image` (EXIF orientation, design §9 mode rules)."""
    return np.asarray(load_image(Path(path)), dtype=np.uint8).copy()


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"no images found in {folder}")
    return files


def iter_images_uint8(paths: Iterable[str | os.PathLike]) -> Iterator[np.ndarray]:
    """Stream decoded images; only one is held in memory at a time."""
    for path in paths:
        yield read_image_uint8(path)
