"""`prepare demo`: small deterministic datasets in the three layouts, from photos inside scikit-image.

The photographs are the files bundled in scikit-image's wheel (`skimage/data/*.png|jpg`); they are read
straight from the installed package, never through `skimage.data`'s fetchers, so nothing is downloaded.
Output (default `data/demo/`):
  * `inpainting_dataset/`: 8 images 256x256 (centre square crop, bicubic), seeded masks from
    `generate_mask(seed=0, index=i)`, masked images (hole black), texts, metadata.json, stats.json;
  * `super-resolution_dataset/`: X2 and X4 Urban100 layout; HR 128x128, LR by `bicubic_downscale`
    (64x64 for X2, 32x32 for X4);
  * `text2img_dataset/`: images with the long side 256 (aspect kept) and `captions.txt`
    (`image_name,caption`, two hand-written captions per image, some with commas and quotes).
`demo.json` records the version; a rerun with the same version is a no-op.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from PIL import Image

from ldm_lab.data.files import save_image_atomic, write_bytes_atomic, write_json_atomic
from ldm_lab.data.images import apply_mask, load_image
from ldm_lab.data.inpainting_writer import make_record, write_metadata, write_sample
from ldm_lab.data.masks import generate_mask
from ldm_lab.data.resize import bicubic_downscale

DEMO_VERSION = 2
DEFAULT_OUT = Path("data/demo")
DATASETS = ("inpainting_dataset", "super-resolution_dataset", "text2img_dataset")
INPAINT_SIZE, HR_SIZE, T2I_LONG_SIDE = 256, 128, 256
MASK_SEED, HOLE_RANGE = 0, (0.1, 0.4)

# (file bundled in skimage/data, name, two captions)
PHOTOS = (
    (
        "astronaut.png",
        "astronaut",
        (
            "A smiling astronaut in an orange spacesuit, holding a helmet.",
            "Portrait of an astronaut, with a flag and a model shuttle behind her.",
        ),
    ),
    (
        "chelsea.png",
        "cat",
        (
            "A close-up of a ginger tabby cat's face.",
            'A tabby cat named "Chelsea", with green eyes and long whiskers.',
        ),
    ),
    (
        "coffee.png",
        "coffee",
        (
            "A cup of coffee on a red saucer, with a spoon.",
            "A white cup of espresso, seen from above, on a wooden table.",
        ),
    ),
    (
        "rocket.jpg",
        "rocket",
        (
            "A rocket on its launch pad at dusk, lit by floodlights.",
            "Launch towers, a rocket, and lights, against a dark blue sky.",
        ),
    ),
    (
        "motorcycle_left.png",
        "motorcycle",
        (
            "A red motorcycle parked in front of shelves and boxes.",
            "A motorbike, seen from the side, in a cluttered garage.",
        ),
    ),
    (
        "hubble_deep_field.jpg",
        "galaxies",
        (
            "Hundreds of galaxies scattered across a dark sky.",
            'A "deep field" photograph of distant galaxies, taken by a telescope.',
        ),
    ),
    (
        "camera.png",
        "cameraman",
        (
            "A black and white photo of a man with a camera on a tripod.",
            "A photographer in a dark coat, standing on a lawn, looking into his camera.",
        ),
    ),
    (
        "coins.png",
        "coins",
        ("Old coins arranged in rows on a dark background.", "A grey photo of ancient coins, in neat rows."),
    ),
)


def load_bundled_photo(name: str) -> Image.Image:
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"demo photo not found: {path} (it ships in scikit-image's wheel; reinstall it)"
        )
    return load_image(path)


def _square(img: Image.Image, size: int) -> Image.Image:
    """Centre square crop, then bicubic (antialiased) resize to size x size."""
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    return img.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=None)


def _long_side(img: Image.Image, size: int) -> Image.Image:
    width, height = img.size
    factor = size / max(width, height)
    new = (max(1, round(width * factor)), max(1, round(height * factor)))
    return img.resize(new, Image.Resampling.BICUBIC, reducing_gap=None)


def _inpainting(out: Path, photos: list[Image.Image]) -> None:
    records = []
    for index, ((_, _name, captions), photo) in enumerate(zip(PHOTOS, photos, strict=True)):
        sample_id = f"{index:05d}"
        image = _square(photo, INPAINT_SIZE)
        mask = generate_mask(image.size, seed=MASK_SEED, index=index, hole_range=HOLE_RANGE)
        write_sample(out, sample_id, image, mask, masked_image=apply_mask(image, mask), text=captions[0])
        records.append(make_record(sample_id, index, image.size, mask, captions[0], "generated"))
    mask_generator = {"seed": MASK_SEED, "hole_range": list(HOLE_RANGE), "method": "strokes+boxes v1"}
    write_metadata(
        out, records, {"source": "ldm-lab demo (scikit-image photos)", "mask_generator": mask_generator}
    )


def _superres(out: Path, photos: list[Image.Image]) -> None:
    for index, photo in enumerate(photos, start=1):
        hr = _square(photo, HR_SIZE)
        for scale in (2, 4):
            stem = f"img_{index:03d}_SRF_{scale}"
            save_image_atomic(out / f"X{scale}" / "HIGH" / f"{stem}_HR.png", hr)
            save_image_atomic(out / f"X{scale}" / "LOW" / f"{stem}_LR.png", bicubic_downscale(hr, scale))


def _text2img(out: Path, photos: list[Image.Image]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image_name", "caption"])
    for (_, name, captions), photo in zip(PHOTOS, photos, strict=True):
        save_image_atomic(out / "images" / f"{name}.png", _long_side(photo, T2I_LONG_SIDE))
        writer.writerows([f"{name}.png", caption] for caption in captions)
    write_bytes_atomic(out / "captions.txt", buffer.getvalue().encode("utf-8"))


def prepare_demo(out: str | Path = DEFAULT_OUT, *, overwrite: bool = False) -> dict[str, Path]:
    """Build the demo datasets under `out` (see module docstring); returns {layout folder name: path}.

    A folder that exists without this version's `demo.json` is refused unless `overwrite`, which deletes
    and rebuilds only the three dataset folders.
    """
    out = Path(out)
    targets = {name: out / name for name in DATASETS}
    stamp = out / "demo.json"
    current = {"version": DEMO_VERSION, "datasets": list(DATASETS)}
    if not overwrite and stamp.is_file() and all(p.is_dir() for p in targets.values()):
        import json

        if json.loads(stamp.read_text(encoding="utf-8")) == current:
            return targets
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} already exist and are not this version's demo data; pass --overwrite "
            "(overwrite=True) to rebuild them"
        )
    for path in targets.values():
        if path.exists():
            shutil.rmtree(path)
    stamp.unlink(missing_ok=True)
    photos = [load_bundled_photo(file) for file, _, _ in PHOTOS]
    _inpainting(targets["inpainting_dataset"], photos)
    _superres(targets["super-resolution_dataset"], photos)
    _text2img(targets["text2img_dataset"], photos)
    write_json_atomic(stamp, current)
    return targets
