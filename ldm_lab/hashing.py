"""SHA-256 of files for dataset fingerprints, metric weights and run manifests.

Standard library only: the data and metrics modules must not import the model package (`ldm`, which has
its own `ldm.hashing` for load reports) for a hash function.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, memoised in this process by (resolved path, size, mtime_ns)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        with open(path, "rb") as f:
            _DIGESTS[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _DIGESTS[key]
