"""Super-resolution reader: Urban100-style `X{s}/HIGH|LOW` pairs, or a generic folder of HR images.

Paired mode (`ROOT/X{s}/HIGH/*_SRF_{s}_HR.*` and `ROOT/X{s}/LOW/*_SRF_{s}_LR.*`): HR and LR are paired
by the stem prefix before `_SRF_` (e.g. `img_001`), never by sorted position. A missing partner, or an
LR whose size times s is not the HR size, is an error listing every offender. With
`crop_to_multiple=True`, an HR whose `modcrop` (bottom/right crop to a multiple of s) equals LR · s is
accepted and cropped when read. Files in HIGH/ and LOW/ that do not match the patterns are ignored and
listed in `stray` (design §9).

Generic mode (`ROOT/*.png|jpg|...`, e.g. DIV2K/Set5/Set14/BSD100 HR folders): HR = `modcrop(image, s)`,
LR = `bicubic_downscale(HR, s)`, the antialiased MATLAB-style bicubic described in `ldm_lab.data.resize`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldm_lab.data.base import FolderDataset, check_max_samples
from ldm_lab.data.files import index_by_stem, list_folder, relpath, require_dir
from ldm_lab.data.images import image_size, load_image, to_tensor
from ldm_lab.data.resize import bicubic_downscale, modcrop

SCALES = (2, 4)
MODES = ("auto", "paired", "generic")
LR_METHOD = "pil-bicubic-float32-antialias"  # recorded in the fingerprint of generic-mode sets


@dataclass
class SuperResolutionSample:
    """One SR pair: `hr` (3, H, W) and `lr` (3, H/s, W/s) float32 in [0, 1], or PIL RGB images."""

    id: str
    hr: Any
    lr: Any
    scale: int


@dataclass
class _Pair:
    id: str
    hr: Path
    lr: Path | None  # None in generic mode: LR is computed from HR
    crop: bool = False


def _split_name(stem: str, scale: int, kind: str) -> str | None:
    """`img_001_SRF_4_HR` -> `img_001` for (scale 4, kind HR); None when the stem does not match."""
    match = re.fullmatch(rf"(.+)_SRF_{scale}_{kind}", stem)
    return match.group(1) if match else None


def detect_sr_mode(root: Path, scale: int) -> str:
    """ "paired" when `ROOT/X{scale}` exists, "generic" when ROOT holds images directly, else an error."""
    if (root / f"X{scale}").is_dir():
        return "paired"
    if list_folder(root)[0]:
        return "generic"
    present = sorted(p.name for p in root.glob("X*") if p.is_dir())
    raise FileNotFoundError(
        f"no super-resolution data for scale {scale} in {root}: expected {root}/X{scale}/HIGH and LOW "
        f"(found {present or 'no X* folders'}) or HR images directly in the folder"
    )


class SuperResolutionDataset(FolderDataset):
    """Lazy reader of an SR set at one `scale` (2 or 4). See the module docstring for the two modes.

    Args:
        root: dataset folder (`data/super-resolution_dataset`) or a folder of HR images.
        scale: 2 or 4; selects `X{scale}/` in paired mode and the downscaling factor in generic mode.
        mode: "auto" (paired if `X{scale}/` exists, else generic), "paired" or "generic".
        crop_to_multiple: paired mode: accept HR whose modcrop matches LR · scale, cropping it when read.
        max_samples: keep the first N valid pairs in sorted order (0/None = all).
    """

    task = "super-resolution"

    def __init__(
        self,
        root: str | Path,
        *,
        scale: int = 4,
        mode: str = "auto",
        crop_to_multiple: bool = False,
        max_samples: int | None = None,
        as_tensor: bool = True,
        verify: str = "header",
        skip_invalid: bool = False,
    ):
        super().__init__(root, verify=verify, skip_invalid=skip_invalid)
        if scale not in SCALES:
            raise ValueError(f"`scale` must be one of {SCALES}, got {scale!r}")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
        self.scale, self.crop_to_multiple, self.as_tensor = scale, bool(crop_to_multiple), as_tensor
        self.max_samples = check_max_samples(max_samples)
        require_dir(self.root, "super-resolution dataset folder")
        self.mode = detect_sr_mode(self.root, scale) if mode == "auto" else mode
        problems: list[tuple[str, str]] = []
        if self.mode == "paired":
            self._index_paired(problems)
        else:
            self._index_generic(problems)
        self._settle(problems)
        self._require_samples(self.root / f"X{scale}" if self.mode == "paired" else self.root)

    def _index_paired(self, problems: list[tuple[str, str]]) -> None:
        s, root = self.scale, self.root
        base = require_dir(root / f"X{s}", f"X{s} folder")
        found = {}
        for kind, folder in (("HR", "HIGH"), ("LR", "LOW")):
            by_stem, ambiguous, others = index_by_stem(
                require_dir(base / folder, f"X{s}/{folder} folder"), root
            )
            problems += ambiguous
            self.stray += [relpath(p, root) for p in others]
            found[kind] = {}
            for stem, path in by_stem.items():
                prefix = _split_name(stem, s, kind)
                if prefix is None:
                    self.stray.append(relpath(path, root))
                else:
                    found[kind][prefix] = path
        hr, lr = found["HR"], found["LR"]
        for prefix in sorted(set(lr) - set(hr)):
            problems.append((relpath(lr[prefix], root), f"no HR partner X{s}/HIGH/{prefix}_SRF_{s}_HR.*"))
        for prefix in sorted(hr):
            if self.max_samples is not None and len(self._samples) >= self.max_samples:
                break
            if prefix not in lr:
                problems.append((relpath(hr[prefix], root), f"no LR partner X{s}/LOW/{prefix}_SRF_{s}_LR.*"))
                continue
            pair = _Pair(prefix, hr[prefix], lr[prefix])
            if all([self._check_image(hr[prefix], problems), self._check_image(lr[prefix], problems)]):
                if self._sizes_match(pair, problems):
                    self._samples.append(pair)

    def _sizes_match(self, pair: _Pair, problems: list[tuple[str, str]]) -> bool:
        s = self.scale
        (hw, hh), (lw, lh) = image_size(pair.hr), image_size(pair.lr)
        if (lw * s, lh * s) == (hw, hh):
            return True
        if self.crop_to_multiple and (hw - hw % s, hh - hh % s) == (lw * s, lh * s):
            pair.crop = True
            return True
        hint = (
            ""
            if self.crop_to_multiple
            else "; crop_to_multiple=True / --crop-to-multiple crops HR to a multiple"
        )
        problems.append(
            (
                relpath(pair.hr, self.root),
                f"is {hw}x{hh} but {relpath(pair.lr, self.root)} is {lw}x{lh}, x{s} = {lw * s}x{lh * s} "
                f"(expected LR x {s} == HR{hint})",
            )
        )
        return False

    def _index_generic(self, problems: list[tuple[str, str]]) -> None:
        by_stem, ambiguous, others = index_by_stem(self.root, self.root)
        problems += ambiguous
        self.stray += [relpath(p, self.root) for p in others]
        for stem in sorted(by_stem):
            if self.max_samples is not None and len(self._samples) >= self.max_samples:
                break
            path = by_stem[stem]
            if not self._check_image(path, problems):
                continue
            width, height = image_size(path)
            if width < self.scale or height < self.scale:
                problems.append(
                    (relpath(path, self.root), f"is {width}x{height}, smaller than scale {self.scale}")
                )
                continue
            self._samples.append(_Pair(stem, path, None, crop=True))

    def __getitem__(self, index: int) -> SuperResolutionSample:
        pair = self._samples[index]
        hr = load_image(pair.hr)
        if pair.crop:
            hr = modcrop(hr, self.scale)
        lr = load_image(pair.lr) if pair.lr is not None else bicubic_downscale(hr, self.scale)
        if self.as_tensor:
            hr, lr = to_tensor(hr), to_tensor(lr)
        return SuperResolutionSample(pair.id, hr, lr, self.scale)

    def paths(self, index: int) -> dict[str, Path]:
        """Files of pair `index`: hr and, in paired mode, lr."""
        pair = self._samples[index]
        return {"hr": pair.hr} if pair.lr is None else {"hr": pair.hr, "lr": pair.lr}

    def files(self) -> list[Path]:
        return [p for pair in self._samples for p in (pair.hr, pair.lr) if p is not None]

    def selection_params(self) -> dict:
        params = {"task": self.task, "scale": self.scale, "mode": self.mode, "max_samples": self.max_samples}
        params["crop_to_multiple"] = self.crop_to_multiple
        if self.mode == "generic":
            params["lr_method"] = LR_METHOD
        return params
