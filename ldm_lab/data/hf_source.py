"""Tabular sources of `prepare inpainting`, read with the Hugging Face `datasets` library.

`--source` forms:
  * `hf:OWNER/NAME`: `datasets.load_dataset(NAME, split=SPLIT)` (needs the Hub or its local cache);
  * a folder written by `save_to_disk` (has `dataset_dict.json` or `state.json`): `load_from_disk`;
  * a `.parquet` file, or a folder of them: `load_dataset("parquet", data_files=...)`. In a folder, files
    named `SPLIT-*`/`SPLIT.*` or under a `SPLIT/` folder are used when there are any, else all files;
  * an `.arrow` file: `Dataset.from_file`.
Image columns are cast to `Image(decode=False)` so that rows carry encoded bytes, decoded only when needed.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

HF_PREFIX = "hf:"


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ValueError(
            "`prepare inpainting` needs the `datasets` package: pip install 'datasets>=2.19'"
        ) from None
    return datasets


def _pick_split(loaded, split: str, source: str):
    datasets = _datasets()
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"split {split!r} not in {source}; available: {sorted(loaded)} (use --split)")
        return loaded[split]
    return loaded


def _parquet_files(folder: Path, split: str) -> tuple[list[str], str]:
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no .parquet files in {folder}")
    matching = [
        f
        for f in files
        if f.name.startswith((f"{split}-", f"{split}.")) or split in f.relative_to(folder).parts[:-1]
    ]
    note = "" if matching else f"no file named for split {split!r}: using all {len(files)} parquet files"
    return [str(f) for f in (matching or files)], note


def load_source(source: str, split: str = "train", log=print):
    """Open `source` (see module docstring) as a `datasets.Dataset` of one split."""
    datasets = _datasets()
    if source.startswith(HF_PREFIX):
        name = source[len(HF_PREFIX) :]
        try:
            return _pick_split(datasets.load_dataset(name, split=split), split, source)
        except Exception as err:  # network, offline mode, auth, unknown repo: all end here
            raise ValueError(
                f"could not load {source} from the Hugging Face Hub ({type(err).__name__}: {err}). "
                "Offline? With HF_HUB_OFFLINE=1 a dataset already in the Hugging Face cache loads without "
                "network; otherwise save it where the Hub is reachable "
                "(`datasets.load_dataset(...).save_to_disk(DIR)`, or its parquet files) and pass --source DIR"
            ) from None
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"source not found: {path} (expected hf:NAME, a parquet/arrow file or a folder)"
        )
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        return _pick_split(datasets.load_from_disk(str(path)), split, source)
    if path.is_dir() or path.suffix == ".parquet":
        files, note = _parquet_files(path, split) if path.is_dir() else ([str(path)], "")
        if note:
            log(note)
        return datasets.load_dataset("parquet", data_files={split: files}, split=split)
    if path.suffix == ".arrow":
        return datasets.Dataset.from_file(str(path))
    raise ValueError(
        f"source {path}: expected a save_to_disk folder, a .parquet file or folder, or an .arrow file"
    )


def undecoded(dataset, columns: list[str]):
    """Cast the image columns among `columns` to `Image(decode=False)` (rows then hold bytes/path dicts)."""
    datasets = _datasets()
    for column in columns:
        if isinstance(dataset.features.get(column), datasets.Image):
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def describe(dataset) -> str:
    """One line per column: name and feature type (the printed schema)."""
    return "\n".join(f"  {name}: {feature}" for name, feature in dataset.features.items())


def cell_bytes(value, column: str, row: int, base: Path | None) -> bytes:
    """Encoded image bytes from a cell: {bytes, path} dict, raw bytes, a PIL image or a file path."""
    if isinstance(value, dict) and value.get("bytes"):
        return value["bytes"]
    if isinstance(value, dict) and value.get("path"):
        value = value["path"]
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() or base is None else base / value
        if path.is_file():
            return path.read_bytes()
        raise FileNotFoundError(f"row {row}, column {column!r}: image file {path} not found")
    raise ValueError(
        f"row {row}, column {column!r}: expected an image (bytes, path or PIL), got {type(value).__name__}"
    )
