"""Helpers for the `ldm_lab.data` tests: tiny images and dataset folders built on the fly (no network).

Imported by tests/test_data_*.py (`from tests.conftest_data import ...`); not a pytest conftest.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB image (every size and seed gives different bytes)."""
    rng = np.random.default_rng([seed, width, height])
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def box_mask(width: int, height: int, box=(0.25, 0.25, 0.75, 0.75)) -> Image.Image:
    """A binary L mask (255 = hole) with one rectangle given in relative coordinates."""
    array = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    array[int(y0 * height) : int(y1 * height), int(x0 * width) : int(x1 * width)] = 255
    return Image.fromarray(array, "L")


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    """Save `image` to `path`, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to a fraction of its bytes (a truncated image: the header still reads)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_inpainting(root: Path, stems=("a", "b", "c"), size=(32, 24), texts=True) -> Path:
    """images/ + masks/ (+ texts/) with one sample per stem; mask i covers a box that depends on i."""
    for i, stem in enumerate(stems):
        save(root / "images" / f"{stem}.png", noise(*size, seed=i))
        save(root / "masks" / f"{stem}.png", box_mask(*size, box=(0.1 * i, 0.0, 0.1 * i + 0.5, 0.5)))
        if texts:
            (root / "texts").mkdir(parents=True, exist_ok=True)
            (root / "texts" / f"{stem}.txt").write_text(f"text of {stem}", encoding="utf-8")
    return root


def make_urban(root: Path, scale: int, prefixes=("img_001", "img_002"), hr=(32, 24), lr_size=None) -> Path:
    """X{scale}/HIGH and X{scale}/LOW in Urban100 naming; LR is a plain resize of HR (or `lr_size`)."""
    for i, prefix in enumerate(prefixes):
        high = noise(*hr, seed=i)
        size = lr_size or (hr[0] // scale, hr[1] // scale)
        save(root / f"X{scale}" / "HIGH" / f"{prefix}_SRF_{scale}_HR.png", high)
        save(root / f"X{scale}" / "LOW" / f"{prefix}_SRF_{scale}_LR.png", high.resize(size))
    return root


def make_text2img(root: Path, names=("1.jpg", "2.jpg", "3.jpg"), captions: str | None = None) -> Path:
    """images/NAME for each name and a captions.txt (given, or two captions per image)."""
    for i, name in enumerate(names):
        save(root / "images" / name, noise(40, 30, seed=i))
    if captions is None:
        lines = ["image_name,caption"] + [f"{n},caption {k} of {n}" for n in names for k in range(2)]
        captions = "\n".join(lines) + "\n"
    (root / "captions.txt").write_text(captions, encoding="utf-8")
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` by relative path: compares two folders byte for byte."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
