"""Seeded irregular masks (strokes + boxes) with a target hole-ratio range.

In the spirit of the LaMa evaluation masks (Suvorov et al. 2022, "thick" irregular strokes plus boxes,
after the Places protocol): a mask is built by adding shapes until the hole ratio reaches a target drawn
uniformly from `hole_range`; if the last shape overshoots the range, the mask is redrawn (up to
`max_tries`). Shapes, relative to s = min(width, height):
  * stroke (probability 0.7): a polyline of 2-6 segments, each of length U(0.05, 0.25)·s at a random
    angle, width U(0.03, 0.10)·s, with rounded joints;
  * box (probability 0.3): sides U(0.10, 0.35)·s, placed uniformly inside the image.
Mask `i` of seed `seed` comes from `numpy.random.default_rng([seed, i])`, so it does not depend on the
other masks (an interrupted `prepare` resumes with identical masks). White (255) = hole.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

DEFAULT_HOLE_RANGE = (0.1, 0.4)
STROKE_PROBABILITY = 0.7


def check_hole_range(hole_range) -> tuple[float, float]:
    """Validate `hole_range` = (low, high) with 0 < low < high < 1."""
    try:
        low, high = (float(v) for v in hole_range)
    except (TypeError, ValueError):
        raise ValueError(f"`hole_range` must be two numbers (low, high), got {hole_range!r}") from None
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"`hole_range` must satisfy 0 < low < high < 1, got ({low}, {high})")
    return low, high


def _stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    s = min(width, height)
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    points = [(x, y)]
    for _ in range(int(rng.integers(2, 7))):
        angle, length = rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.25) * s
        x = float(np.clip(x + length * math.cos(angle), 0, width - 1))
        y = float(np.clip(y + length * math.sin(angle), 0, height - 1))
        points.append((x, y))
    line_width = max(1, int(round(rng.uniform(0.03, 0.10) * s)))
    draw.line(points, fill=255, width=line_width, joint="curve")
    radius = line_width / 2
    for px, py in (points[0], points[-1]):  # round caps
        draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=255)


def _box(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    s = min(width, height)
    box_w = min(width, int(round(rng.uniform(0.10, 0.35) * s)))
    box_h = min(height, int(round(rng.uniform(0.10, 0.35) * s)))
    left, top = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
    draw.rectangle((left, top, left + box_w - 1, top + box_h - 1), fill=255)


def generate_mask(
    size: tuple[int, int],
    *,
    seed: int = 0,
    index: int = 0,
    hole_range: tuple[float, float] = DEFAULT_HOLE_RANGE,
    max_tries: int = 100,
) -> Image.Image:
    """Irregular stroke + box mask of `size` (w, h), hole ratio in `hole_range`; L image, 255 = hole."""
    low, high = check_hole_range(hole_range)
    width, height = size
    if width < 8 or height < 8:
        raise ValueError(f"mask size must be at least 8x8, got {width}x{height}")
    rng = np.random.default_rng([int(seed), int(index)])
    for _ in range(max_tries):
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        target, ratio = rng.uniform(low, high), 0.0
        while ratio < target:
            shape = _stroke if rng.random() < STROKE_PROBABILITY else _box
            shape(draw, rng, width, height)
            ratio = float((np.asarray(mask) > 127).mean())
        if ratio <= high:
            return mask
    raise ValueError(
        f"could not draw a {width}x{height} mask with hole ratio in [{low}, {high}] in {max_tries} tries; "
        "widen `hole_range`"
    )
