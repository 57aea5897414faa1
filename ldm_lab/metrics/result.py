"""Result objects and per-sample column names shared by every metric (design §4, §9).

A metric that cannot be computed is reported as unavailable with a reason, never as a number.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

# Per-sample column names (design §9): metric and protocol in the name.
COL_PSNR_Y = "psnr_y"
COL_SSIM_Y = "ssim_y"
COL_PSNR_RGB = "psnr_rgb"
COL_SSIM_RGB = "ssim_rgb"
COL_PSNR_HOLE = "psnr_hole"
COL_SSIM_HOLE_BBOX = "ssim_hole_bbox"
COL_LPIPS = "lpips"
COL_LPIPS_HOLE_BBOX = "lpips_hole_bbox"
COL_EDGE_CONSISTENCY = "edge_consistency"
COL_EDGE_CONSISTENCY_OUTER_RING = "edge_consistency_outer_ring"
COL_EDGE_IOU = "edge_iou"
COL_CLIP_COSINE = "clip_cosine"
COL_CLIPSCORE = "clipscore"

PER_SAMPLE_COLUMNS: tuple[str, ...] = (
    COL_PSNR_Y,
    COL_SSIM_Y,
    COL_PSNR_RGB,
    COL_SSIM_RGB,
    COL_PSNR_HOLE,
    COL_SSIM_HOLE_BBOX,
    COL_LPIPS,
    COL_LPIPS_HOLE_BBOX,
    COL_EDGE_CONSISTENCY,
    COL_EDGE_CONSISTENCY_OUTER_RING,
    COL_EDGE_IOU,
    COL_CLIP_COSINE,
    COL_CLIPSCORE,
)

# Dataset-level metric names (keys of metrics.json).
KEY_FID = "fid"
KEY_KID = "kid"
KEY_PRECISION = "precision"
KEY_RECALL = "recall"


class MetricUnavailable(ValueError):
    """Raised by a per-sample metric that is undefined for this input (e.g. an empty hole)."""


@dataclass(frozen=True)
class MetricResult:
    """One reported metric: a value with its N, 95% CI and protocol, or `unavailable` + reason."""

    name: str
    value: float | None
    n: int | None = None
    ci95: tuple[float, float] | None = None
    protocol: str = ""
    unavailable: str | None = None
    warnings: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.value is None) == (self.unavailable is None):
            raise ValueError(f"{self.name}: exactly one of `value` and `unavailable` must be given")

    @classmethod
    def missing(cls, name: str, reason: str, *, protocol: str = "", n: int | None = None) -> MetricResult:
        """A metric that could not be computed, with the reason."""
        return cls(name=name, value=None, n=n, protocol=protocol, unavailable=reason)

    @property
    def available(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict:
        """Plain-Python dict for metrics.json (no numpy scalars, no timings)."""
        out: dict = {"name": self.name, "protocol": self.protocol, "n": self.n}
        if self.available:
            out["value"] = _plain(self.value)
            if self.ci95 is not None:
                out["ci95"] = [_plain(self.ci95[0]), _plain(self.ci95[1])]
        else:
            out["unavailable"] = self.unavailable
        if self.warnings:
            out["warnings"] = list(self.warnings)
        out.update({k: _plain(v) for k, v in self.extra.items()})
        return out

    def __str__(self) -> str:
        if not self.available:
            return f"{self.name}: unavailable ({self.unavailable})"
        ci = f" [{self.ci95[0]:.4g}, {self.ci95[1]:.4g}]" if self.ci95 else ""
        return f"{self.name} = {self.value:.4g}{ci} (N={self.n}, {self.protocol})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(str(self))}</code>"


def _plain(v):
    """numpy scalar -> Python number (so json.dumps works); lists element-wise."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v.item() if hasattr(v, "item") else v
