"""Sources of `prepare superres|text2img`: a zip archive or a folder, seen as a flat list of files.

macOS metadata (`__MACOSX/`, `._*`), hidden files and folders are left out. Output names are built from
each file's base name only, never from its path inside the archive, so an archive cannot write outside
the output folder.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ldm_lab.data.files import IGNORED_NAMES, is_image_name, write_bytes_atomic


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: its path inside the source (posix), base name, size and a reader."""

    name: str
    size: int
    read: Callable[[], bytes]

    @property
    def basename(self) -> str:
        return PurePosixPath(self.name).name

    @property
    def is_image(self) -> bool:
        return is_image_name(self.basename)


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1] in IGNORED_NAMES


@contextmanager
def open_source(path: str | Path) -> Iterator[list[SourceFile]]:
    """Yield the files of a zip archive or folder `path`, sorted by name."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"source not found: {path}")
    if path.is_dir():
        files = [
            SourceFile(p.relative_to(path).as_posix(), p.stat().st_size, p.read_bytes)
            for p in sorted(path.rglob("*"))
            if p.is_file() and not _skipped(p.relative_to(path).as_posix())
        ]
        yield files
        return
    if not zipfile.is_zipfile(path):
        raise ValueError(f"source {path} is neither a folder nor a zip archive")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"source {path}: cannot open zip archive ({err})") from None
    with archive:
        infos = sorted(
            (i for i in archive.infolist() if not i.is_dir() and not _skipped(i.filename)),
            key=lambda i: i.filename,
        )
        yield [SourceFile(i.filename, i.file_size, (lambda i=i: archive.read(i))) for i in infos]


def copy_file(source: SourceFile, dest: Path, *, overwrite: bool) -> bool:
    """Copy `source` to `dest` atomically. Returns False (no write) when `dest` already holds the same bytes.

    An existing `dest` with other bytes is an error unless `overwrite`.
    """
    data = source.read()
    if dest.is_file():
        if dest.stat().st_size == len(data) and dest.read_bytes() == data:
            return False
        if not overwrite:
            raise FileExistsError(
                f"{dest} exists with different content than {source.name}; pass --overwrite"
            )
    write_bytes_atomic(dest, data)
    return True


def unique_by_basename(files: list[SourceFile], what: str) -> dict[str, SourceFile]:
    """Map base name -> file; two different files with one base name are an error naming both."""
    chosen: dict[str, SourceFile] = {}
    clashes = []
    for item in files:
        other = chosen.get(item.basename)
        if other is None:
            chosen[item.basename] = item
        elif other.size != item.size or other.read() != item.read():
            clashes.append(f"{other.name} vs {item.name}")
    if clashes:
        raise ValueError(f"{what}: different files share a base name: {'; '.join(clashes)}")
    return chosen
