"""Resizing used by the readers: SR modcrop and bicubic downscaling, inpainting working resolution.

`bicubic_downscale` is how generic super-resolution sets (an HR folder only: DIV2K, Set5, Set14, BSD100)
get their LR images. It uses PIL's BICUBIC filter (Keys cubic, a = -0.5, the kernel of MATLAB's
`imresize`), antialiased the way `imresize` is: the kernel is stretched by the scale factor, so each LR
pixel averages a 4·s × 4·s HR neighbourhood. The resize runs per channel in 32-bit float and rounds once
to uint8, like `imresize` on uint8 input. Interior pixels match `imresize` to within one grey level;
border pixels differ slightly because PIL renormalises the kernel where it leaves the image, where MATLAB
mirrors the image. The HR image is first cropped to a multiple of the scale (`modcrop`, top-left anchored,
the BasicSR convention), so LR · s == HR exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def modcrop(img: Image.Image, scale: int) -> Image.Image:
    """Crop the bottom/right edge so both sides are multiples of `scale` (BasicSR `modcrop`)."""
    width, height = img.size
    new_w, new_h = width - width % scale, height - height % scale
    if new_w == 0 or new_h == 0:
        raise ValueError(f"image of size {width}x{height} is smaller than the scale factor {scale}")
    return img if (new_w, new_h) == (width, height) else img.crop((0, 0, new_w, new_h))


def bicubic_downscale(img: Image.Image, scale: int) -> Image.Image:
    """Antialiased bicubic downscaling by an integer `scale` (MATLAB-`imresize`-style; see module doc).

    `img` must be RGB with sides divisible by `scale` (use `modcrop` first).
    """
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"`scale` must be a positive integer, got {scale!r}")
    width, height = img.size
    if width % scale or height % scale:
        raise ValueError(f"image size {width}x{height} is not a multiple of scale {scale}; modcrop it first")
    size = (width // scale, height // scale)
    channels = []
    for band in img.split():
        small = band.convert("F").resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
        channels.append(np.clip(np.rint(np.asarray(small)), 0, 255).astype(np.uint8))
    array = np.stack(channels, axis=-1) if len(channels) > 1 else channels[0]
    return Image.fromarray(array, img.mode)


def resize_image(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize an RGB image to `size` (w, h) with PIL BICUBIC, which is antialiased when downscaling."""
    return img if img.size == tuple(size) else img.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)


def resize_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize a binary mask to `size` (w, h) with nearest neighbour, so it stays binary."""
    return mask if mask.size == tuple(size) else mask.resize(size, Image.Resampling.NEAREST)
