"""Image loading with the settled conversions of design §9, EXIF orientation and readable errors.

Mode rule (`to_rgb`):
  * RGB is kept; L, 1, P without transparency, CMYK, YCbCr, RGBX go through PIL's `convert("RGB")`
    (P via its palette, CMYK via PIL's conversion);
  * RGBA, LA, PA and P/L/RGB with a transparency entry are composited over white;
  * 16-bit grey (I;16, I;16B, I;16L) and 32-bit I are scaled to 8 bit as round(v / 257), clipped to 0..255;
  * any other mode (F, HSV, LAB, ...) is an error naming the file and the mode.
Masks (`load_mask`) follow the older scripts: PIL's `convert("L")` (alpha ignored), 16-bit scaled as above,
then a pixel is hole (1) when value / 255 >= 0.5, i.e. white = hole.

A truncated or undecodable file is a ValueError naming the file. PIL's decompression-bomb protection is
kept: an image above the limit is a ValueError that says how to raise `PIL.Image.MAX_IMAGE_PIXELS`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_PLAIN_TO_RGB = {"L", "1", "P", "CMYK", "YCbCr", "RGBX"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
MASK_THRESHOLD = 0.5  # hole where value / 255 >= MASK_THRESHOLD (upstream scripts/inpaint.py)


def _open(path: Path, data: bytes | None = None) -> Image.Image:
    """Open `path` (or `data`, named `path`) lazily; PIL errors become FileNotFoundError/ValueError."""
    try:
        return Image.open(io.BytesIO(data) if data is not None else path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"{path}: image is larger than PIL's decompression-bomb limit ({err}); if you trust this file, "
            f"raise PIL.Image.MAX_IMAGE_PIXELS (now {Image.MAX_IMAGE_PIXELS}) before loading it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only (no pixel decoding)."""
    with _open(path) as img:
        width, height = img.size
        try:
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
        except Exception:  # a broken EXIF block is not a broken image; orientation is then unknown
            orientation = 1
    return (height, width) if orientation in _SWAPS_SIDES else (width, height)


def _decoded(path: Path, data: bytes | None = None) -> Image.Image:
    """Open `path` (or `data`), decode every pixel and apply the EXIF orientation."""
    img = _open(path, data)
    try:
        img.load()
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as err:  # truncated data, broken chunks, bad palettes
        raise ValueError(f"{path}: cannot decode image ({err})") from None
    finally:
        img.close()


def sixteen_bit_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit I) grey to 8-bit L by round(v / 257), clipped to 0..255 (design §9)."""
    values = np.asarray(img).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image, name: str | Path = "image") -> Image.Image:
    """Convert a decoded PIL image to RGB by the mode rule in this module's docstring."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _PLAIN_TO_RGB:
        return img.convert("RGB")
    if mode in _SIXTEEN_BIT:
        return sixteen_bit_to_8bit(img).convert("RGB")
    raise ValueError(
        f"{name}: unsupported image mode {mode!r}; expected one of RGB, RGBA, LA, L, 1, P, CMYK, YCbCr, "
        "I;16 or I"
    )


def load_image(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Load an image as RGB: decode, EXIF-transpose, convert by the design §9 mode rule.

    With `data`, the bytes are decoded instead of the file and `path` only names them in errors.
    """
    path = Path(path)
    return to_rgb(_decoded(path, data), path)


def binarize_mask(img: Image.Image) -> Image.Image:
    """Decoded mask -> binary L (255 = hole): `convert("L")` (16-bit scaled), hole where v / 255 >= 0.5."""
    grey = sixteen_bit_to_8bit(img) if img.mode in _SIXTEEN_BIT else img.convert("L")
    values = np.asarray(grey, dtype=np.float32) / 255.0
    return Image.fromarray(np.where(values >= MASK_THRESHOLD, 255, 0).astype(np.uint8), "L")


def load_mask(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Load a mask as a binary L image (255 = hole): white (>= 0.5) is hole, as in CompVis `inpaint.py`."""
    path = Path(path)
    return binarize_mask(_decoded(path, data))


def apply_mask(image: Image.Image, mask: Image.Image) -> Image.Image:
    """image · (1 - mask) for an RGB image and a binary mask (255 = hole): the hole becomes black."""
    keep = (np.asarray(mask) < 128)[..., None]
    return Image.fromarray((np.asarray(image) * keep).astype(np.uint8), "RGB")


def verify_image(path: Path, *, full: bool) -> str | None:
    """None if `path` is usable, else the reason. `full=True` decodes every pixel (finds truncation)."""
    try:
        if full:
            img = _decoded(path)
            if img.mode not in ("L", "1"):
                to_rgb(img, path)
        else:
            image_size(path)
    except (ValueError, FileNotFoundError) as err:
        return str(err).removeprefix(f"{path}: ")
    return None


def to_tensor(img: Image.Image):
    """PIL RGB or L image -> float32 torch tensor (C, H, W) in [0, 1]."""
    import torch

    array = np.asarray(img, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def hole_ratio(mask: Image.Image) -> float:
    """Fraction of hole pixels (value 255) in a binary mask from `load_mask`."""
    return float((np.asarray(mask) > 127).mean())
