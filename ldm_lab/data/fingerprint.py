"""Dataset fingerprints: one sha256 over relative paths, sizes and content hashes of the files a reader uses.

The fingerprint keys the metric feature cache and is recorded in run manifests (design §4, §5). Content
hashes are cached by (absolute path, size, mtime_ns): in memory for the process and in a JSON file under
`$LDM_LAB_CACHE` (default `~/.cache/ldm-lab`) across processes, so repeated calls only `stat` the files.
Set `LDM_LAB_CACHE` to an empty string to keep the cache in memory only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ldm_lab.data.files import relpath, write_json_atomic
from ldm_lab.hashing import sha256_of

FINGERPRINT_VERSION = "ldm-lab-dataset-fingerprint-v1"
CACHE_FILE = "file-hashes.json"
_MEMORY: dict[str, tuple[int, int, str]] = {}


def cache_dir() -> Path | None:
    """Folder of the on-disk hash cache (`$LDM_LAB_CACHE`, default `~/.cache/ldm-lab`); None if disabled."""
    value = os.environ.get("LDM_LAB_CACHE")
    if value is None:
        return Path.home() / ".cache" / "ldm-lab"
    return Path(value) if value else None


_DISK: dict[str, tuple[tuple[int, int], dict[str, list]]] = {}  # folder -> (file size/mtime, entries)
_UNSAVED: dict[str, dict[str, tuple[int, int, str]]] = {}  # folder -> hashes not yet written (save=False)


def _load_disk_cache(folder: Path | None) -> dict[str, list]:
    """The JSON cache's entries (read again only when the file changed; do not modify the result)."""
    if folder is None or not (folder / CACHE_FILE).is_file():
        return {}
    try:
        stat = os.stat(folder / CACHE_FILE)
        version = (stat.st_size, stat.st_mtime_ns)
        if str(folder) in _DISK and _DISK[str(folder)][0] == version:
            return _DISK[str(folder)][1]
        data = json.loads((folder / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged cache only costs re-hashing; it is rewritten by `save_hashes`
    data = data if isinstance(data, dict) else {}
    _DISK[str(folder)] = (version, data)
    return data


def cached_sha256(paths: Iterable[Path], *, save: bool = True) -> dict[Path, tuple[int, str]]:
    """(size, sha256) per path, hashing only files whose (path, size, mtime_ns) is not cached.

    New hashes are written to the JSON cache before returning, or with `save=False` kept for one later
    `save_hashes()` (callers that ask file by file, so the cache is not rewritten once per file).
    """
    folder = cache_dir()
    pending = _UNSAVED.setdefault(str(folder), {})
    result = {}
    for path in paths:
        key = str(Path(path).resolve())
        stat = os.stat(key)
        entry = _MEMORY.get(key)
        if entry is None or entry[:2] != (stat.st_size, stat.st_mtime_ns):
            stored = _load_disk_cache(folder).get(key)
            if stored and tuple(stored[:2]) == (stat.st_size, stat.st_mtime_ns):
                entry = (stat.st_size, stat.st_mtime_ns, stored[2])
            else:
                entry = (stat.st_size, stat.st_mtime_ns, sha256_of(key))
                pending[key] = entry
            _MEMORY[key] = entry
        result[path] = (entry[0], entry[2])
    if save:
        save_hashes()
    return result


def save_hashes() -> None:
    """Write the hashes computed since the last write into the JSON cache of `cache_dir()` (one write)."""
    folder = cache_dir()
    pending = _UNSAVED.pop(str(folder), {})
    if not pending or folder is None:
        return
    disk = dict(_load_disk_cache(folder))  # merged into what is there now (another process may have added)
    disk.update({key: list(entry) for key, entry in pending.items()})
    try:
        write_json_atomic(folder / CACHE_FILE, disk)
    except OSError:
        pass  # read-only home: the in-memory cache still serves this process


def dataset_fingerprint(
    root: str | Path, files: Iterable[str | Path], *, params: Mapping | None = None
) -> str:
    """sha256 hex digest of (relative path, size, content sha256) for every file, plus selection `params`.

    Args:
        root: dataset folder; paths are recorded relative to it, so a moved dataset keeps its fingerprint.
        files: the files the reader uses (absolute, or relative to `root`).
        params: reader options that change which samples or texts are used (scale, caption policy,
            max_samples, seed, ...); JSON-serialisable.
    """
    root = Path(root)
    paths = [p if Path(p).is_absolute() else root / p for p in map(Path, files)]
    if not paths:
        raise ValueError(f"cannot fingerprint {root}: the dataset has no files")
    hashes = cached_sha256(paths)
    digest = hashlib.sha256()
    digest.update(f"{FINGERPRINT_VERSION}\n".encode())
    digest.update(json.dumps(dict(params or {}), sort_keys=True, default=str).encode() + b"\n")
    for rel, path in sorted((relpath(p, root), p) for p in paths):
        size, sha = hashes[path]
        digest.update(f"{rel}\t{size}\t{sha}\n".encode())
    return digest.hexdigest()
