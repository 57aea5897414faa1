"""On-disk feature cache: `.npz` files keyed by dataset fingerprint + extractor + weights sha256 +
preprocessing. A second evaluation against the same reference reuses the features; an entry that
cannot be read, holds another key, or holds non-finite values is detected and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ldm_lab.data.files import write_bytes_atomic
from ldm_lab.metrics.fidelity_features import FeatureExtractor, extract_features
from ldm_lab.metrics.image_io import iter_images_uint8

ENV_CACHE_DIR = "LDM_LAB_CACHE"
CACHE_FORMAT = 1
# Result keys of `cached_features` status.
CACHE_HIT, CACHE_MISS, CACHE_REBUILT = "hit", "miss", "rebuilt"


@dataclass(frozen=True)
class FeatureKey:
    """Everything the features depend on."""

    dataset_fingerprint: str
    extractor: str
    weights: str
    preprocessing: str

    def digest(self) -> str:
        text = json.dumps({"format": CACHE_FORMAT, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def default_cache_dir() -> Path:
    """`$LDM_LAB_CACHE` or ~/.cache/ldm-lab/features."""
    return Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "ldm-lab" / "features")


def fingerprint_files(paths: Sequence[str | os.PathLike]) -> str:
    """sha256 over (file name, content sha256) of each file, in the given order."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).name.encode() + b"\0" + hashlib.sha256(Path(path).read_bytes()).digest())
    return h.hexdigest()


def cache_path(cache_dir: str | os.PathLike, key: FeatureKey) -> Path:
    return Path(cache_dir) / f"features-{key.digest()[:32]}.npz"


def run_features_path(run_dir: str | os.PathLike, extractor_kind: str, role: str = "generated") -> Path:
    """Where a run keeps its own features (so metrics can be recomputed without re-extraction)."""
    return Path(run_dir) / f"features_{role}_{extractor_kind}.npz"


def save_features(path: str | os.PathLike, features: np.ndarray, key: FeatureKey) -> Path:
    """Write features + key atomically (temp file in the same folder, then rename)."""
    buffer = io.BytesIO()
    np.savez(buffer, features=np.asarray(features, np.float32), key=np.array(json.dumps(asdict(key))),
             format=np.array(CACHE_FORMAT))
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def load_features(path: str | os.PathLike, key: FeatureKey) -> tuple[np.ndarray | None, str]:
    """(features, "") when the entry is valid for `key`, else (None, reason)."""
    path = Path(path)
    if not path.is_file():
        return None, "no cache entry"
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key, fmt, features = str(data["key"]), int(data["format"]), data["features"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        return None, f"unreadable cache entry {path.name} ({type(err).__name__}: {err})"
    if fmt != CACHE_FORMAT or json.loads(stored_key) != asdict(key):
        return None, f"cache entry {path.name} was written for another key"
    if features.ndim != 2 or features.shape[0] == 0 or not np.isfinite(features).all():
        return None, f"cache entry {path.name} holds invalid features (shape {features.shape} or non-finite)"
    return features, ""


def cached_features(
    cache_dir: str | os.PathLike, key: FeatureKey, compute: Callable[[], np.ndarray]
) -> tuple[np.ndarray, str]:
    """(features, status): reuse a valid entry ('hit'), else compute and store ('miss' / 'rebuilt: reason')."""
    path = cache_path(cache_dir, key)
    features, reason = load_features(path, key)
    if features is not None:
        return features, CACHE_HIT
    features = compute()
    save_features(path, features, key)
    return features, CACHE_MISS if reason == "no cache entry" else f"{CACHE_REBUILT}: {reason}"


def reference_features(
    paths: Sequence[str | os.PathLike],
    extractor: FeatureExtractor,
    *,
    resize_mode: str = "tf1-bilinear",
    cache_dir: str | os.PathLike | None = None,
    dataset_fingerprint: str | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, str]:
    """Features of reference image files through the cache; returns (features, cache status)."""
    key = FeatureKey(
        dataset_fingerprint=dataset_fingerprint or fingerprint_files(paths),
        extractor=extractor.id,
        weights=extractor.weights_id,
        preprocessing=f"uint8,resize={resize_mode}",
    )
    compute = lambda: extract_features(
        iter_images_uint8(paths), extractor, resize_mode=resize_mode, batch_size=batch_size
    )
    return cached_features(cache_dir or default_cache_dir(), key, compute)
