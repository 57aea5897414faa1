"""`data check`: detect a dataset's layout, validate every file (full decode) and summarise it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ldm_lab.data.images import hole_ratio, image_size, load_mask
from ldm_lab.data.inpainting import NEAR_FULL_HOLE, InpaintingDataset
from ldm_lab.data.layout import INPAINTING, SUPER_RESOLUTION, TEXT2IMG, detect_layout, sr_scales
from ldm_lab.data.superres import SCALES, SuperResolutionDataset
from ldm_lab.data.text2img import Text2ImgDataset

MAX_LISTED = 10  # stray/skipped files listed by name in the summary; the rest are counted


@dataclass
class CheckReport:
    """Result of `check_dataset`: layout, sample count, fingerprint and the printed summary lines."""

    root: Path
    layout: str
    n_samples: int
    fingerprint: str
    lines: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _sizes(sizes: list[tuple[int, int]]) -> str:
    """ "256x256 (all 8)" or "min 300x200, median 480x360, max 500x500 (by area)"."""
    if len(set(sizes)) == 1:
        return f"{sizes[0][0]}x{sizes[0][1]} (all {len(sizes)})"
    ordered = sorted(sizes, key=lambda wh: (wh[0] * wh[1], wh))
    fmt = lambda wh: f"{wh[0]}x{wh[1]}"
    return (
        f"min {fmt(ordered[0])}, median {fmt(ordered[len(ordered) // 2])}, max {fmt(ordered[-1])} (by area)"
    )


def _listed(title: str, names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = f", ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return f"{title}: {len(names)}" + (f": {shown}{more}" if names else "")


def _inpainting_lines(ds: InpaintingDataset) -> list[str]:
    paths = [ds.paths(i) for i in range(len(ds))]
    ratios = [hole_ratio(load_mask(p["mask"])) for p in paths]
    empty = sum(r == 0.0 for r in ratios)
    full = sum(r > NEAR_FULL_HOLE for r in ratios)
    return [
        f"samples: {len(ds)} (with masked_images: {sum('masked_image' in p for p in paths)}, "
        f"with texts: {sum('text' in p for p in paths)})",
        f"image sizes: {_sizes([image_size(p['image']) for p in paths])}",
        f"hole ratio: min {min(ratios):.3f}, mean {statistics.fmean(ratios):.3f}, max {max(ratios):.3f}; "
        f"empty masks: {empty}; near-full (>{NEAR_FULL_HOLE:.0%}): {full}",
    ]


def _superres_lines(ds: SuperResolutionDataset) -> list[str]:
    paths = [ds.paths(i) for i in range(len(ds))]
    lines = [
        f"x{ds.scale}: {len(ds)} pairs ({ds.mode}), HR sizes: {_sizes([image_size(p['hr']) for p in paths])}"
    ]
    if ds.mode == "paired":
        lines.append(f"x{ds.scale}: LR sizes: {_sizes([image_size(p['lr']) for p in paths])}")
    else:
        lines.append(f"x{ds.scale}: LR made by antialiased bicubic downscaling of the modcropped HR")
    return lines


def _text2img_lines(ds: Text2ImgDataset) -> list[str]:
    words = [len(text.split()) for text in ds.texts]
    images = {ds.paths(i)["image"] for i in range(len(ds))}
    return [
        f"caption file: {ds.caption_file.name} ({ds.n_caption_rows} caption rows)",
        f"samples: {len(ds)} (caption policy {ds.caption_policy!r}; {len(images)} distinct images)",
        f"image sizes: {_sizes([image_size(p) for p in sorted(images)])}",
        f"words per caption: min {min(words)}, mean {statistics.fmean(words):.1f}, max {max(words)}",
    ]


def check_dataset(
    path: str | Path,
    *,
    scales: list[int] | None = None,
    skip_invalid: bool = False,
    caption_policy: str = "first",
    crop_to_multiple: bool = False,
) -> CheckReport:
    """Detect the layout of `path`, validate every sample with a full decode, and summarise it.

    Raises the reader's error (naming every bad file) unless `skip_invalid`, in which case bad files are
    listed as skipped. `scales` limits a super-resolution check (default: every `X{s}` present);
    `crop_to_multiple` is passed to `SuperResolutionDataset`.
    """
    root = Path(path)
    layout = detect_layout(root)
    common = {"verify": "full", "skip_invalid": skip_invalid}
    if layout == INPAINTING:
        readers = [InpaintingDataset(root, **common)]
        lines = _inpainting_lines(readers[0])
    elif layout == TEXT2IMG:
        readers = [Text2ImgDataset(root, caption_policy=caption_policy, **common)]
        lines = _text2img_lines(readers[0])
    else:
        present = sr_scales(root) if layout == SUPER_RESOLUTION else list(scales or SCALES)
        wanted = list(scales or present)
        unknown = [s for s in wanted if s not in SCALES or s not in present]
        if unknown:
            raise ValueError(f"scale(s) {unknown} not available in {root}; found X folders for {present}")
        mode = "paired" if layout == SUPER_RESOLUTION else "generic"
        readers = [
            SuperResolutionDataset(root, scale=s, mode=mode, crop_to_multiple=crop_to_multiple, **common)
            for s in wanted
        ]
        lines = [line for ds in readers for line in _superres_lines(ds)]
    skipped = [item for ds in readers for item in ds.skipped]
    stray = sorted({name for ds in readers for name in ds.stray})
    fingerprint = readers[0].fingerprint() if len(readers) == 1 else _combined(readers)
    report = CheckReport(
        root, layout, sum(len(ds) for ds in readers), fingerprint, skipped=skipped, stray=stray
    )
    report.lines = [f"layout: {layout} ({root})", *lines]
    report.lines.append(_listed("skipped as invalid", [f"{n} ({why})" for n, why in skipped]))
    report.lines.append(_listed("stray files (ignored)", stray))
    report.lines.append(f"fingerprint: {fingerprint}")
    report.lines.append("OK" if not skipped else f"OK with {len(skipped)} skipped file(s)")
    return report


def _combined(readers: list[SuperResolutionDataset]) -> str:
    """Fingerprint over every scale's files, for the whole SR folder."""
    from ldm_lab.data.fingerprint import dataset_fingerprint

    files = [p for ds in readers for p in ds.files()]
    params = {"scales": [ds.selection_params() for ds in readers]}
    return dataset_fingerprint(readers[0].root, files, params=params)
