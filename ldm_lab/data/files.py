"""File helpers shared by the readers and `prepare` commands: image listing, problem lists, atomic writes."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from pathlib import Path

# Extensions the readers accept as images (lower-case, compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Names that tools leave in dataset folders; never images, never reported as stray files.
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def is_image_name(name: str) -> bool:
    """True for a file name with one of `IMAGE_EXTENSIONS` that is not hidden (`.` or `._` prefix)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """Split the plain files of `folder` into (images, others), both sorted by name.

    Hidden files and `IGNORED_NAMES` appear in neither list; sub-folders are ignored.
    """
    images, others = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name in IGNORED_NAMES or path.name.startswith("."):
            continue
        (images if is_image_name(path.name) else others).append(path)
    return images, others


def require_dir(path: Path, what: str) -> Path:
    """Return `path` if it is a folder, else raise FileNotFoundError/NotADirectoryError naming `what`."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} is not a folder: {path}")
    return path


def relpath(path: Path, root: Path) -> str:
    """`path` relative to `root` with forward slashes (used in messages, manifests and fingerprints)."""
    return Path(os.path.relpath(path, root)).as_posix()


def problems_error(root: Path, problems: list[tuple[str, str]], hint: str = "") -> ValueError:
    """One ValueError naming every problem file: "N problem(s) in ROOT: a.png: reason; b.png: reason"."""
    listed = "; ".join(f"{name}: {reason}" for name, reason in problems)
    suffix = f" ({hint})" if hint else ""
    return ValueError(f"{len(problems)} problem(s) in {root}: {listed}{suffix}")


SKIP_HINT = "pass skip_invalid=True (CLI: --skip-invalid) to skip these and record them"


_UMASK_LOCK = threading.Lock()


def process_umask() -> int:
    """This process's umask: read from /proc on Linux (no side effect, so safe in writer threads); elsewhere
    by setting and restoring it, under a lock."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)
    except (OSError, AttributeError):
        with _UMASK_LOCK:
            mask = os.umask(0o022)
            os.umask(mask)
            return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    The file gets the mode a plain `open(path, "w")` would give (0666 minus the umask), not mkstemp's 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~process_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    """Write `obj` as indented UTF-8 JSON (non-ASCII kept) atomically."""
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def save_image_atomic(path: Path, image, **save_kwargs) -> None:
    """Save a PIL image atomically; the format follows the suffix of `path`."""
    import io

    buffer = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), path.suffix.lstrip(".").upper())
    image.save(buffer, format=fmt, **save_kwargs)
    write_bytes_atomic(path, buffer.getvalue())


def index_by_stem(folder: Path, root: Path) -> tuple[dict[str, Path], list[tuple[str, str]], list[Path]]:
    """Map file stem -> image path in `folder`; also return (ambiguous-stem problems, non-image files).

    Two images with one stem (`a.png` and `a.jpg`) cannot be paired by name, so both are problems.
    """
    images, others = list_folder(folder)
    by_stem: dict[str, list[Path]] = {}
    for path in images:
        by_stem.setdefault(path.stem, []).append(path)
    problems = [
        (relpath(paths[0], root), f"ambiguous stem {stem!r}: " + ", ".join(relpath(p, root) for p in paths))
        for stem, paths in by_stem.items()
        if len(paths) > 1
    ]
    unique = {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}
    return unique, problems, others
