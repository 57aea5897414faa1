"""Inpainting reader for `ROOT/{images,masks,masked_images,texts}/` (layout of the older `setup_data.py`).

Files are paired by stem (`images/00007.png` with `masks/00007.png`), never by sorted position. Masks:
white = hole (value / 255 >= 0.5, as CompVis `scripts/inpaint.py`). `masked_images/` is optional; when a
sample has none, the masked image is derived as image · (1 - mask), i.e. the hole is black, exactly as the
CompVis inpainting script builds its conditioning. `texts/STEM.txt` is optional. `metadata.json` and
`stats.json` are not needed to read the set.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldm_lab.data.base import FolderDataset, check_max_samples
from ldm_lab.data.files import index_by_stem, relpath, require_dir
from ldm_lab.data.images import apply_mask, hole_ratio, image_size, load_image, load_mask, to_tensor
from ldm_lab.data.resize import resize_image, resize_mask

NEAR_FULL_HOLE = 0.95  # a mask covering more than this fraction of the image gets a warning


@dataclass
class InpaintingSample:
    """One inpainting sample. Tensors are float32 in [0, 1]: image/masked_image (3, H, W), mask (1, H, W)
    with 1 = hole; with `as_tensor=False` they are PIL images (RGB, RGB, binary L with 255 = hole)."""

    id: str
    image: Any
    mask: Any
    masked_image: Any
    text: str | None
    hole_ratio: float


@dataclass
class _Entry:
    id: str
    image: Path
    mask: Path
    masked_image: Path | None
    text: Path | None


class InpaintingDataset(FolderDataset):
    """Lazy reader of an inpainting folder (images + masks paired by stem).

    Args:
        root: folder with `images/` and `masks/` (and optionally `masked_images/`, `texts/`).
        max_samples: the first N valid samples in sorted-stem order (0/None = all), like the older script.
        resolution: None keeps native sizes; an int resizes to resolution × resolution (image and masked
            image: bicubic with antialiasing; mask: nearest), the `--resolution` rule of design §9.
        as_tensor: return tensors (default) or PIL images.
        verify: "header" (sizes, readable headers) or "full" (decode every pixel once, finds truncation).
        skip_invalid: skip and record bad samples in `skipped` instead of raising one error naming them all.
    """

    task = "inpainting"

    def __init__(
        self,
        root: str | Path,
        *,
        max_samples: int | None = None,
        resolution: int | None = None,
        as_tensor: bool = True,
        verify: str = "header",
        skip_invalid: bool = False,
    ):
        super().__init__(root, verify=verify, skip_invalid=skip_invalid)
        self.max_samples = check_max_samples(max_samples)
        if resolution is not None and (not isinstance(resolution, int) or resolution < 8):
            raise ValueError(f"`resolution` must be None (native) or an integer >= 8, got {resolution!r}")
        self.resolution = resolution
        self.as_tensor = as_tensor
        self._index()

    def _index(self) -> None:
        root = require_dir(self.root, "inpainting dataset folder")
        images, problems, others = index_by_stem(require_dir(root / "images", "images folder"), root)
        masks, mask_problems, mask_others = index_by_stem(require_dir(root / "masks", "masks folder"), root)
        problems += mask_problems
        masked, texts = {}, {}
        if (root / "masked_images").is_dir():
            masked, masked_problems, masked_others = index_by_stem(root / "masked_images", root)
            problems += masked_problems
            others += masked_others
        if (root / "texts").is_dir():
            texts = {p.stem: p for p in sorted((root / "texts").glob("*.txt"))}
        self.stray = [relpath(p, root) for p in others + mask_others]
        self.stray += [relpath(masks[s], root) for s in sorted(set(masks) - set(images))]
        bad_stems = {Path(name).stem for name, _ in problems}
        for stem in sorted(images):
            if self.max_samples is not None and len(self._samples) >= self.max_samples:
                break
            if stem in bad_stems:
                continue
            entry = _Entry(stem, images[stem], masks.get(stem), masked.get(stem), texts.get(stem))
            if self._valid(entry, problems):
                self._samples.append(entry)
        self._settle(problems)
        self._require_samples(root / "images")

    def _valid(self, entry: _Entry, problems: list[tuple[str, str]]) -> bool:
        image_rel = relpath(entry.image, self.root)
        if entry.mask is None:
            problems.append((image_rel, f"no mask masks/{entry.id}.* with the same stem"))
            return False
        paths = [entry.image, entry.mask] + ([entry.masked_image] if entry.masked_image else [])
        if not all([self._check_image(p, problems) for p in paths]):
            return False
        sizes = {p: image_size(p) for p in paths}
        for other in paths[1:]:
            if sizes[other] != sizes[entry.image]:
                w, h = sizes[entry.image]
                ow, oh = sizes[other]
                problems.append(
                    (image_rel, f"is {w}x{h} but {relpath(other, self.root)} is {ow}x{oh} (sizes must match)")
                )
                return False
        return True

    def __getitem__(self, index: int) -> InpaintingSample:
        entry = self._samples[index]
        image, mask = load_image(entry.image), load_mask(entry.mask)
        masked = load_image(entry.masked_image) if entry.masked_image else None
        if self.resolution is not None:
            size = (self.resolution, self.resolution)
            image, mask = resize_image(image, size), resize_mask(mask, size)
            masked = resize_image(masked, size) if masked is not None else None
        if masked is None:
            masked = apply_mask(image, mask)
        ratio = hole_ratio(mask)
        if ratio == 0.0:
            warnings.warn(f"{entry.mask}: mask is empty (no hole to fill)", stacklevel=2)
        elif ratio > NEAR_FULL_HOLE:
            warnings.warn(
                f"{entry.mask}: mask covers {ratio:.1%} of the image (near-full hole)", stacklevel=2
            )
        text = entry.text.read_text(encoding="utf-8").strip() if entry.text else None
        if self.as_tensor:
            image, mask, masked = to_tensor(image), to_tensor(mask), to_tensor(masked)
        return InpaintingSample(entry.id, image, mask, masked, text, ratio)

    def paths(self, index: int) -> dict[str, Path]:
        """Files of sample `index`: image, mask and, when present, masked_image and text."""
        entry = self._samples[index]
        found = {
            "image": entry.image,
            "mask": entry.mask,
            "masked_image": entry.masked_image,
            "text": entry.text,
        }
        return {key: path for key, path in found.items() if path is not None}

    def files(self) -> list[Path]:
        paths = []
        for entry in self._samples:
            paths += [p for p in (entry.image, entry.mask, entry.masked_image, entry.text) if p is not None]
        return paths

    def selection_params(self) -> dict:
        return {"task": self.task, "max_samples": self.max_samples}
