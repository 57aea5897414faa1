"""Text-to-image reader for `ROOT/images/` + `ROOT/captions.txt` (or Flickr30k's `results.csv`).

Caption policy (Flickr30k has five captions per image):
  * `first` (default): one sample per image with its first caption in file order, so no image repeats;
  * `all`: one sample per caption row; ids are `STEM#k` (k = 0-based caption index of that image);
  * `random`: one sample per image, caption drawn by `random.Random(f"{seed}:{image}")`, so an image's
    choice does not depend on the rest of the set.
Images appear in the order of their first caption. `max_samples` keeps a seeded subset
(`random.Random(seed).sample`) in that order. A caption whose image file is missing is an error (or
skipped and recorded with `skip_invalid`); images without a caption are ignored and listed in `stray`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldm_lab.data.base import FolderDataset, check_max_samples
from ldm_lab.data.captions import CaptionRow, find_caption_file, read_captions
from ldm_lab.data.files import list_folder, relpath, require_dir
from ldm_lab.data.images import load_image, to_tensor

CAPTION_POLICIES = ("first", "all", "random")


@dataclass
class Text2ImgSample:
    """One prompt with its reference image: `image` (3, H, W) float32 in [0, 1] or a PIL RGB image."""

    id: str
    text: str
    image: Any
    image_name: str


@dataclass
class _Entry:
    id: str
    text: str
    path: Path


def images_folder(root: Path) -> Path:
    """`ROOT/images`; a Kaggle-style `Images/` is named in the error with the command that converts it."""
    folder = root / "images"
    if not folder.is_dir() and (root / "Images").is_dir():
        raise FileNotFoundError(
            f"images folder not found: {folder} (found {root / 'Images'}; the layout needs lower-case "
            f"images/: run `ldm-lab prepare text2img --source {root} --out DIR`)"
        )
    return require_dir(folder, "images folder")


class Text2ImgDataset(FolderDataset):
    """Lazy reader of a text-to-image set: prompts with their reference images.

    Args:
        root: folder with `images/` and `captions.txt` or `results.csv`.
        caption_file: explicit caption file (default: `captions.txt`, else `results.csv` in `root`).
        caption_policy: "first" (default), "all" or "random" (see module docstring).
        max_samples: seeded random subset of that many samples, kept in file order (0/None = all).
        seed: seed of the `random` policy and of the subset.
    """

    task = "text2img"

    def __init__(
        self,
        root: str | Path,
        *,
        caption_file: str | Path | None = None,
        caption_policy: str = "first",
        max_samples: int | None = None,
        seed: int = 0,
        as_tensor: bool = True,
        verify: str = "header",
        skip_invalid: bool = False,
    ):
        super().__init__(root, verify=verify, skip_invalid=skip_invalid)
        if caption_policy not in CAPTION_POLICIES:
            raise ValueError(f"`caption_policy` must be one of {CAPTION_POLICIES}, got {caption_policy!r}")
        self.caption_policy, self.seed, self.as_tensor = caption_policy, int(seed), as_tensor
        self.max_samples = check_max_samples(max_samples)
        require_dir(self.root, "text-to-image dataset folder")
        folder = images_folder(self.root)
        self.caption_file = Path(caption_file) if caption_file else find_caption_file(self.root)
        rows, problems = read_captions(self.caption_file)
        self.n_caption_rows = len(rows)
        by_image = self._group(rows, folder, problems)
        self._samples = self._select(by_image)
        verified = [e for e in self._samples if self._check_image(e.path, problems)]
        kept = {e.path for e in verified}
        self._samples = [e for e in self._samples if e.path in kept]
        self._settle(problems)
        images, others = list_folder(folder)
        captioned = {entry[0].path for entry in by_image.values() if entry}
        self.stray = [relpath(p, self.root) for p in others + [p for p in images if p not in captioned]]
        self._require_samples(folder)

    def _group(self, rows: list[CaptionRow], folder: Path, problems) -> dict[str, list[_Entry]]:
        """Captions per image name in first-appearance order; missing images become problems."""
        by_image: dict[str, list[_Entry]] = {}
        missing: dict[str, int] = {}
        for row in rows:
            if row.image in missing:
                continue
            path = folder / row.image
            if row.image not in by_image:
                if Path(row.image).name != row.image or not path.is_file():
                    missing[row.image] = row.line
                    where = f"listed in {self.caption_file.name} line {row.line}"
                    problems.append((relpath(path, self.root), f"{where} but not found in images/"))
                    continue
                by_image[row.image] = []
            entries = by_image[row.image]
            suffix = f"#{len(entries)}" if self.caption_policy == "all" else ""
            entries.append(_Entry(Path(row.image).stem + suffix, row.caption, path))
        return by_image

    def _select(self, by_image: dict[str, list[_Entry]]) -> list[_Entry]:
        """Apply the caption policy, then the seeded `max_samples` subset."""
        if self.caption_policy == "all":
            samples = [entry for entries in by_image.values() for entry in entries]
        elif self.caption_policy == "first":
            samples = [entries[0] for entries in by_image.values()]
        else:
            samples = [random.Random(f"{self.seed}:{name}").choice(e) for name, e in by_image.items()]
        if self.max_samples is not None and len(samples) > self.max_samples:
            keep = sorted(random.Random(self.seed).sample(range(len(samples)), self.max_samples))
            samples = [samples[i] for i in keep]
        return samples

    def __getitem__(self, index: int) -> Text2ImgSample:
        entry = self._samples[index]
        image = load_image(entry.path)
        return Text2ImgSample(
            entry.id, entry.text, to_tensor(image) if self.as_tensor else image, entry.path.name
        )

    def paths(self, index: int) -> dict[str, Path]:
        """Files of sample `index`: its reference image."""
        return {"image": self._samples[index].path}

    def _digest_text(self, index: int) -> str:
        return f"caption\t{self._samples[index].text}"

    @property
    def texts(self) -> list[str]:
        """Prompts in evaluation order (no image decoding)."""
        return [entry.text for entry in self._samples]

    def files(self) -> list[Path]:
        return sorted({entry.path for entry in self._samples}) + [self.caption_file]

    def selection_params(self) -> dict:
        params = {"task": self.task, "caption_policy": self.caption_policy, "max_samples": self.max_samples}
        if self.caption_policy == "random" or self.max_samples is not None:
            params["seed"] = self.seed
        return params
