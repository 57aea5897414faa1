"""Writes inpainting folders (`prepare inpainting`, `prepare demo`): sample files, metadata.json, stats.json.

Each file is written atomically, so a sample is complete exactly when all of its files exist; an
interrupted `prepare` resumes by skipping complete samples.

`metadata.json`: a list, one object per sample: `id` (file stem, e.g. "00007"), `source_index` (row in
the source), `image_size` [w, h], `hole_ratio`, `text` (or null), `mask_source` ("dataset"/"generated").
`stats.json`: `total_samples`, `folders_created`, `image_size` (min/max/distinct), `hole_ratio`
(min/mean/median/max), `empty_masks`, plus what the caller adds (source, columns, mask generator, ...).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from PIL import Image

from ldm_lab.data.files import save_image_atomic, write_bytes_atomic, write_json_atomic
from ldm_lab.data.images import hole_ratio

FOLDERS = ("images", "masked_images", "masks", "texts")


def sample_files(out: Path, sample_id: str, *, masked: bool, text: bool) -> list[Path]:
    """Files that make up one complete sample."""
    files = [out / "images" / f"{sample_id}.png", out / "masks" / f"{sample_id}.png"]
    if masked:
        files.append(out / "masked_images" / f"{sample_id}.png")
    if text:
        files.append(out / "texts" / f"{sample_id}.txt")
    return files


def write_sample(
    out: Path,
    sample_id: str,
    image: Image.Image,
    mask: Image.Image,
    *,
    masked_image: Image.Image | None = None,
    text: str | None = None,
) -> None:
    """Write one sample (PNG images, binary L mask with 255 = hole, UTF-8 text without newline)."""
    if image.size != mask.size:
        raise ValueError(f"sample {sample_id}: image is {image.size} but mask is {mask.size}")
    if text is not None:
        write_bytes_atomic(out / "texts" / f"{sample_id}.txt", text.encode("utf-8"))
    if masked_image is not None:
        save_image_atomic(out / "masked_images" / f"{sample_id}.png", masked_image)
    save_image_atomic(out / "masks" / f"{sample_id}.png", mask)
    save_image_atomic(out / "images" / f"{sample_id}.png", image)  # last: marks the sample as present


def make_record(sample_id: str, source_index: int, size, mask: Image.Image, text, mask_source: str) -> dict:
    """One metadata.json entry."""
    return {
        "id": sample_id,
        "source_index": int(source_index),
        "image_size": [int(size[0]), int(size[1])],
        "hole_ratio": round(hole_ratio(mask), 6),
        "text": text,
        "mask_source": mask_source,
    }


def write_metadata(out: Path, records: list[dict], extra_stats: dict) -> dict:
    """Write metadata.json and stats.json; return the stats."""
    if not records:
        raise ValueError(f"no samples to write to {out}")
    ratios = [r["hole_ratio"] for r in records]
    sizes = sorted({tuple(r["image_size"]) for r in records}, key=lambda wh: (wh[0] * wh[1], wh))
    stats = {
        "total_samples": len(records),
        "folders_created": [f for f in FOLDERS if (out / f).is_dir()],
        "image_size": {"min": list(sizes[0]), "max": list(sizes[-1]), "distinct": len(sizes)},
        "hole_ratio": {
            "min": min(ratios),
            "mean": round(statistics.fmean(ratios), 6),
            "median": round(statistics.median(ratios), 6),
            "max": max(ratios),
        },
        "empty_masks": sum(r == 0.0 for r in ratios),
        **extra_stats,
    }
    write_json_atomic(out / "metadata.json", records)
    write_json_atomic(out / "stats.json", stats)
    return stats
