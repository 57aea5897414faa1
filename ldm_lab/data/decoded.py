"""Remember which image contents decoded completely, so a run validates its whole dataset once.

`verify="full"` decodes every pixel of every image (it finds truncated files). A run does it before the
first image is sampled, in the CLI and again in the notebook's kernel, and every rerun of the same command
does it again; for a large set that is minutes. Files are identified by their content sha256 (cached by
path, size and mtime_ns in `ldm_lab.data.fingerprint`, which the dataset fingerprint computes anyway), so a
file that is changed, repaired or replaced is decoded again. Only successes are remembered; a file that
failed is decoded (and reported) every time. The set lives beside the hash cache (`$LDM_LAB_CACHE`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from ldm_lab.data.files import write_json_atomic
from ldm_lab.data.fingerprint import cache_dir, cached_sha256, save_hashes

CACHE_FILE = "decoded-ok.json"
VERSION = "ldm-lab-full-decode-v1"  # bump when what "decodes completely" checks changes
_LOCK = threading.Lock()
_STATE: dict = {"loaded": False, "ok": set(), "dirty": False}


def _load() -> set[str]:
    if not _STATE["loaded"]:
        folder = cache_dir()
        if folder is not None and (folder / CACHE_FILE).is_file():
            try:
                data = json.loads((folder / CACHE_FILE).read_text(encoding="utf-8"))
                if data.get("version") == VERSION:
                    _STATE["ok"].update(data.get("sha256", []))
            except (OSError, ValueError, AttributeError):
                pass  # a damaged cache only costs decoding again; it is rewritten by `flush`
        _STATE["loaded"] = True
    return _STATE["ok"]


def content_id(path: Path) -> str:
    return cached_sha256([Path(path)], save=False)[Path(path)][1]  # written once, by `flush`


def known_good(path: Path) -> bool:
    """True if a file with this content decoded completely before (here or in an earlier process)."""
    with _LOCK:
        return content_id(path) in _load()


def remember_good(path: Path) -> None:
    with _LOCK:
        ok = _load()
        sha = content_id(path)
        if sha not in ok:
            ok.add(sha)
            _STATE["dirty"] = True


def flush() -> None:
    """Write the set, and the content hashes it was looked up by, to the cache folder (after a reader has
    checked its files); a read-only home is fine."""
    save_hashes()
    with _LOCK:
        folder = cache_dir()
        if not _STATE["dirty"] or folder is None:
            return
        try:
            write_json_atomic(folder / CACHE_FILE, {"version": VERSION, "sha256": sorted(_STATE["ok"])})
            _STATE["dirty"] = False
        except OSError:
            pass
