"""Layout detection: which of the dataset layouts a folder holds (design §9, `data check`)."""

from __future__ import annotations

import re
from pathlib import Path

from ldm_lab.data.captions import CAPTION_FILES
from ldm_lab.data.files import list_folder

INPAINTING = "inpainting"
SUPER_RESOLUTION = "super-resolution"
TEXT2IMG = "text2img"
HR_FOLDER = "hr-folder"  # generic super-resolution: HR images only, LR made by bicubic downscaling
LAYOUTS = (INPAINTING, SUPER_RESOLUTION, TEXT2IMG, HR_FOLDER)


def sr_scales(root: Path) -> list[int]:
    """Scales s with an `X{s}/` folder in `root`, ascending."""
    found = [re.fullmatch(r"X(\d+)", p.name) for p in root.iterdir() if p.is_dir()]
    return sorted(int(m.group(1)) for m in found if m)


def detect_layout(path: str | Path) -> str:
    """One of `LAYOUTS` for the folder `path`, checked in this order:

    inpainting (`images/` + `masks/`), text2img (`captions.txt` or `results.csv`), super-resolution
    (`X2/`, `X4/`, ...), hr-folder (image files directly in the folder). An empty or unrecognised folder
    is an error; an empty one says "no images found in PATH".
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"dataset path is not a folder: {root}")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return INPAINTING
    if any((root / name).is_file() for name in CAPTION_FILES):
        return TEXT2IMG
    if sr_scales(root):
        return SUPER_RESOLUTION
    if list_folder(root)[0]:
        return HR_FOLDER
    entries = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    if not entries:
        raise ValueError(f"no images found in {root}")
    raise ValueError(
        f"no images found in {root}: unrecognised layout (found {', '.join(entries[:10])}); expected "
        f"images/ + masks/ (inpainting), images/ + {' or '.join(CAPTION_FILES)} (text2img), "
        "X2/ or X4/ with HIGH/ and LOW/ (super-resolution), or image files (HR folder)"
    )
