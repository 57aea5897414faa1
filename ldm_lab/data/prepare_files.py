"""`prepare superres` and `prepare text2img`: lay out a downloaded zip or folder for the readers.

superres, two cases:
  * Urban100 as distributed (files named `*_SRF_{s}_HR.*` / `*_SRF_{s}_LR.*`, anywhere in the source):
    copied byte for byte to `OUT/X{s}/HIGH/` and `OUT/X{s}/LOW/` for each requested scale;
  * otherwise an HR folder (DIV2K, Set5, ...): for each scale, HR = `modcrop(image, s)` saved as
    `OUT/X{s}/HIGH/{stem}_SRF_{s}_HR.png` and LR = `bicubic_downscale(HR, s)` as
    `OUT/X{s}/LOW/{stem}_SRF_{s}_LR.png`.
text2img (Flickr30k as distributed, `Images/` or `flickr30k_images/` + `captions.txt` or `results.csv`):
  images are copied byte for byte to `OUT/images/`, the caption file to `OUT/` (`captions.txt` is used when
  both are present).
Copied files already present with the same bytes are skipped (reruns are idempotent, interrupted runs
resume); present with other bytes, they are an error unless `overwrite`. Derived HR/LR pairs already
present are kept (they are deterministic); after changing an HR source, rerun with `overwrite`. The result
is validated with the reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ldm_lab.data.captions import CAPTION_FILES
from ldm_lab.data.files import save_image_atomic
from ldm_lab.data.images import load_image
from ldm_lab.data.resize import bicubic_downscale, modcrop
from ldm_lab.data.sources import SourceFile, copy_file, open_source, unique_by_basename
from ldm_lab.data.superres import SCALES, SuperResolutionDataset
from ldm_lab.data.text2img import Text2ImgDataset

SRF_NAME = re.compile(r"(?P<prefix>.+)_SRF_(?P<scale>\d+)_(?P<kind>HR|LR)")


@dataclass
class PrepareResult:
    """What a `prepare` command did: output folder, files written, files already there, files ignored."""

    out: Path
    written: int = 0
    unchanged: int = 0
    ignored: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{self.out}: {self.written} file(s) written, {self.unchanged} already up to date"
        ignored = f"; ignored {len(self.ignored)}: {', '.join(self.ignored[:10])}" if self.ignored else ""
        return "\n".join([head + ignored, *self.summary])


def _check_scales(scales) -> list[int]:
    scales = sorted(set(int(s) for s in scales))
    bad = [s for s in scales if s not in SCALES]
    if not scales or bad:
        raise ValueError(f"`scales` must be a non-empty subset of {SCALES}, got {scales}")
    return scales


def prepare_superres(
    source: str | Path, out: str | Path, *, scales=(2, 4), overwrite: bool = False
) -> PrepareResult:
    """Build `OUT/X{s}/HIGH|LOW` from an Urban100 zip/folder or an HR-only zip/folder (module docstring)."""
    scales, out = _check_scales(scales), Path(out)
    result = PrepareResult(out)
    with open_source(source) as files:
        images = [f for f in files if f.is_image]
        result.ignored = [f.name for f in files if not f.is_image]
        named = [(f, SRF_NAME.fullmatch(Path(f.basename).stem)) for f in images]
        if not images:
            raise ValueError(f"no images found in {source}")
        if any(match for _, match in named):
            _copy_pairs(named, out, scales, overwrite, result)
        else:
            _derive_pairs(unique_by_basename(images, str(source)), out, scales, overwrite, result)
    for scale in scales:
        ds = SuperResolutionDataset(out, scale=scale, mode="paired")
        result.summary.append(f"x{scale}: {len(ds)} pairs")
    return result


def _copy_pairs(named, out: Path, scales: list[int], overwrite: bool, result: PrepareResult) -> None:
    found = {s: 0 for s in scales}
    wanted = [(f, m) for f, m in named if m]
    result.ignored += [f.name for f, m in named if not m]
    for item, match in wanted:
        scale = int(match["scale"])
        if scale not in scales:
            result.ignored.append(item.name)
            continue
        found[scale] += 1
        folder = "HIGH" if match["kind"] == "HR" else "LOW"
        dest = out / f"X{scale}" / folder / item.basename
        if copy_file(item, dest, overwrite=overwrite):
            result.written += 1
        else:
            result.unchanged += 1
    missing = [s for s, n in found.items() if n == 0]
    if missing:
        raise ValueError(
            f"source has no *_SRF_{{s}}_HR/LR files for scale(s) {missing}; pick --scales among those present"
        )


def _derive_pairs(images: dict[str, SourceFile], out: Path, scales, overwrite: bool, result) -> None:
    for name, item in sorted(images.items()):
        stem = Path(name).stem
        targets = {
            s: (
                out / f"X{s}" / "HIGH" / f"{stem}_SRF_{s}_HR.png",
                out / f"X{s}" / "LOW" / f"{stem}_SRF_{s}_LR.png",
            )
            for s in scales
        }
        if not overwrite and all(hr.is_file() and lr.is_file() for hr, lr in targets.values()):
            result.unchanged += 2 * len(scales)  # derived files are deterministic: present means done
            continue
        image = load_image(item.name, item.read())
        for scale, (hr_path, lr_path) in targets.items():
            hr = modcrop(image, scale)
            save_image_atomic(hr_path, hr)
            save_image_atomic(lr_path, bicubic_downscale(hr, scale))
            result.written += 2


def prepare_text2img(
    source: str | Path, out: str | Path, *, overwrite: bool = False, skip_invalid: bool = False
) -> PrepareResult:
    """Build `OUT/images/` + caption file from a Flickr30k-style zip/folder (module docstring).

    The copy is validated with `Text2ImgDataset`; `skip_invalid` reports bad caption rows or images
    (Flickr30k's `results.csv` has a malformed row) instead of failing.
    """
    out = Path(out)
    result = PrepareResult(out)
    with open_source(source) as files:
        captions = {name: [f for f in files if f.basename == name] for name in CAPTION_FILES}
        for name, found in captions.items():
            if len(found) > 1:
                raise ValueError(f"{source}: several {name} files: {', '.join(f.name for f in found)}")
        chosen = next((found[0] for found in captions.values() if found), None)
        if chosen is None:
            raise FileNotFoundError(f"no caption file in {source}: expected {' or '.join(CAPTION_FILES)}")
        images = unique_by_basename([f for f in files if f.is_image], str(source))
        if not images:
            raise ValueError(f"no images found in {source}")
        result.ignored = [f.name for f in files if not f.is_image and f is not chosen]
        for name, item in sorted(images.items()):
            written = copy_file(item, out / "images" / name, overwrite=overwrite)
            result.written, result.unchanged = result.written + written, result.unchanged + (not written)
        written = copy_file(chosen, out / chosen.basename, overwrite=overwrite)
        result.written, result.unchanged = result.written + written, result.unchanged + (not written)
    ds = Text2ImgDataset(out, caption_file=out / chosen.basename, skip_invalid=skip_invalid)
    result.summary.append(f"{chosen.basename}: {ds.n_caption_rows} captions, {len(ds)} images with captions")
    result.summary += [f"skipped: {name}: {why}" for name, why in ds.skipped]
    return result
