"""`prepare inpainting`: a Hugging Face dataset (Hub, save_to_disk, parquet, arrow) -> inpainting folder.

Row i becomes sample `{i:05d}` (the older `setup_data.py` naming): `images/`, `masks/` (binary, white =
hole), `masked_images/` and, when the row has text, `texts/`. Masks come from the mask column when the
source has one; otherwise from `generate_mask(seed=seed, index=i, hole_range=...)` (strokes + boxes,
see `ldm_lab.data.masks`). Masked images come from the masked-image column when the masks also come from
the source, else they are derived as image · (1 - mask). `metadata.json` and `stats.json` are written
at the end (see `ldm_lab.data.inpainting_writer`).

The settings are stored in `prepare.json` first. A rerun with the same settings skips complete samples
(idempotent; an interrupted run resumes); a rerun with other settings is refused, naming the differing
settings, unless `overwrite`, which deletes the previous output first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ldm_lab.data.base import check_max_samples
from ldm_lab.data.files import problems_error, write_json_atomic
from ldm_lab.data.hf_source import HF_PREFIX, cell_bytes, describe, load_source, undecoded
from ldm_lab.data.images import apply_mask, image_size, load_image, load_mask
from ldm_lab.data.inpainting import InpaintingDataset
from ldm_lab.data.inpainting_writer import FOLDERS, make_record, sample_files, write_metadata, write_sample
from ldm_lab.data.masks import DEFAULT_HOLE_RANGE, check_hole_range, generate_mask

DEFAULT_OUT = Path("data/inpainting_dataset")
SETTINGS_FILE = "prepare.json"
PREPARE_VERSION = 1
OUTPUTS = (*FOLDERS, "metadata.json", "stats.json", SETTINGS_FILE)


def _column(columns: list[str], wanted: str | None, default: str, option: str, source: str) -> str | None:
    """The column to use: an explicit name must exist; the default name is used only when present."""
    if wanted is None:
        return default if default in columns else None
    if wanted not in columns:
        raise ValueError(f"column {wanted!r} ({option}) not in {source}; columns: {columns}")
    return wanted


def _prepare_out(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to mix runs: same settings resume, other settings need `overwrite` (which clears OUTPUTS)."""
    stored_path = out / SETTINGS_FILE
    present = [name for name in OUTPUTS if (out / name).exists()]
    if present and not overwrite:
        if not stored_path.is_file():
            raise FileExistsError(
                f"{out} already holds {', '.join(present)} not made by `prepare inpainting`; "
                "pass --overwrite or another --out"
            )
        stored = json.loads(stored_path.read_text(encoding="utf-8"))
        differing = sorted(k for k in settings.keys() | stored.keys() if settings.get(k) != stored.get(k))
        if differing:
            changes = ", ".join(f"{k} ({stored.get(k)!r} -> {settings.get(k)!r})" for k in differing)
            raise FileExistsError(f"{out} was prepared with other settings: {changes}; pass --overwrite")
    if overwrite:
        for name in present:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    write_json_atomic(stored_path, settings)


def prepare_inpainting(
    source: str,
    out: str | Path = DEFAULT_OUT,
    *,
    split: str = "train",
    image_column: str = "image",
    mask_column: str | None = None,
    masked_image_column: str | None = None,
    text_column: str | None = None,
    seed: int = 0,
    hole_range: tuple[float, float] = DEFAULT_HOLE_RANGE,
    max_samples: int | None = None,
    overwrite: bool = False,
    skip_invalid: bool = False,
    progress: bool = False,
    log=print,
) -> dict:
    """Write an inpainting folder from `source` (module docstring); returns the stats.json content.

    Column options left at None use the columns `mask`, `masked_image`, `text` when the source has them.
    """
    from tqdm import tqdm

    # 1. Check arguments and open the source.
    out, max_samples, hole_range = Path(out), check_max_samples(max_samples), check_hole_range(hole_range)
    source = str(source)
    dataset = load_source(source, split, log)
    columns = list(dataset.column_names)
    log(f"{source} [{split}]: {len(dataset)} rows; schema:\n{describe(dataset)}")
    image_col = _column(columns, image_column, "image", "--image-column", source)
    mask_col = _column(columns, mask_column, "mask", "--mask-column", source)
    masked_col = _column(columns, masked_image_column, "masked_image", "--masked-image-column", source)
    text_col = _column(columns, text_column, "text", "--text-column", source)
    masked_col = masked_col if mask_col else None  # another mask's masked image would not match
    generator = (
        None
        if mask_col
        else {"method": "strokes+boxes v1", "seed": int(seed), "hole_range": list(hole_range)}
    )
    log(f"masks: {'column ' + repr(mask_col) if mask_col else 'generated ' + json.dumps(generator)}")

    # 2. Settings: resume, refuse or start over.
    where = source if source.startswith(HF_PREFIX) else str(Path(source).resolve())
    used = {"image": image_col, "mask": mask_col, "masked_image": masked_col, "text": text_col}
    settings = {
        "version": PREPARE_VERSION,
        "source": where,
        "split": split,
        "columns": used,
        "mask_generator": generator,
        "max_samples": max_samples,
    }
    _prepare_out(out, settings, overwrite)

    # 3. Write samples, skipping complete ones.
    dataset = undecoded(dataset, [c for c in (image_col, mask_col, masked_col) if c])
    base = Path(source) if not source.startswith(HF_PREFIX) and Path(source).is_dir() else None
    count = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    records, problems = [], []
    for index in tqdm(range(count), desc="prepare inpainting", disable=not progress):
        sample_id, row = f"{index:05d}", dataset[index]
        text = None if not text_col or row[text_col] is None else str(row[text_col])
        files = sample_files(out, sample_id, masked=True, text=text is not None)
        try:
            if all(f.is_file() for f in files):
                mask, size = load_mask(files[1]), image_size(files[0])
            else:
                mask, size = _write_row(out, sample_id, index, row, used, generator, base, text)
        except (ValueError, FileNotFoundError) as err:
            problems.append((f"row {index}", str(err)))
            continue
        records.append(
            make_record(sample_id, index, size, mask, text, "dataset" if mask_col else "generated")
        )
    if problems and not skip_invalid:
        raise problems_error(
            Path(source), problems, "fix the rows or pass --skip-invalid; finished rows are kept"
        )

    # 4. metadata.json, stats.json, then read the result back.
    extra = {
        "source": where,
        "split": split,
        "sample_structure": columns,
        "columns": used,
        "mask_generator": generator,
        "skipped": [f"{name}: {why}" for name, why in problems],
    }
    stats = write_metadata(out, records, extra)
    InpaintingDataset(out)
    return stats


def _write_row(out: Path, sample_id: str, index: int, row: dict, used: dict, generator, base, text):
    """Decode one row, build its mask and masked image, write the sample; return (mask, size)."""
    name = lambda key: f"row {index} column {used[key]!r}"
    image = load_image(name("image"), cell_bytes(row[used["image"]], used["image"], index, base))
    if used["mask"]:
        mask = load_mask(name("mask"), cell_bytes(row[used["mask"]], used["mask"], index, base))
    else:
        mask = generate_mask(
            image.size, seed=generator["seed"], index=index, hole_range=generator["hole_range"]
        )
    if mask.size != image.size:
        raise ValueError(
            f"image is {image.size[0]}x{image.size[1]} but mask is {mask.size[0]}x{mask.size[1]}"
        )
    masked = apply_mask(image, mask)
    if used["masked_image"] and row[used["masked_image"]] is not None:
        data = cell_bytes(row[used["masked_image"]], used["masked_image"], index, base)
        masked = load_image(name("masked_image"), data)
        if masked.size != image.size:
            raise ValueError(f"image is {image.size} but masked image is {masked.size}")
    write_sample(out, sample_id, image, mask, masked_image=masked, text=text)
    return mask, image.size
