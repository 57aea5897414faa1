"""Read a pre-1.6 (legacy, non-zip) `torch.save` file with the restricted unpickler, skipping training state.

The legacy stream is: pickled magic number, protocol version and system info, the pickled object (its
tensors refer to storages by key), the pickled list of storage keys, then each storage's raw bytes in that
order (an int64 element count, then the data). `torch.load` reads every storage, so a Lightning
`last.ckpt` with AdamW moments costs three times its weights in memory. Here storages are allocated
(untouched memory is not resident) while unpickling, and the bytes of those used only by training-state
entries (`optimizer_states`, ...) are skipped with a seek: they are never read. Everything else is read
exactly as torch does; tensors are rebuilt by torch's own functions through `ldm.safe_pickle`.
"""

from __future__ import annotations

import bisect
import struct
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from ldm import safe_pickle

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def _storage_dtype(storage_type) -> torch.dtype:
    """`torch.FloatStorage` (a placeholder name in our unpickler) -> torch.float32, via torch's own table."""
    name = storage_type.name if isinstance(storage_type, safe_pickle.Placeholder) else ""
    module, _, short = name.rpartition(".")
    if module not in ("torch", "torch.cuda") or not short.endswith("Storage"):
        raise safe_pickle.UnpicklingError(f"storage of unknown type {storage_type!r}")
    try:
        return torch.serialization.StorageType(short).dtype
    except (KeyError, AttributeError) as err:
        raise safe_pickle.UnpicklingError(f"storage of unknown type {name}") from err


def _training_only(obj, skip_entries: tuple[str, ...], roots: dict[str, torch.UntypedStorage]) -> set[str]:
    """Keys of the root storages that hold tensors of `skip_entries` and of no other entry (views included:
    a storage is kept when any kept tensor points into it)."""
    if not isinstance(obj, Mapping) or not skip_entries:
        return set()

    def pointers(entries) -> list[int]:
        return sorted({t.untyped_storage().data_ptr() for v in entries for t in safe_pickle.walk(v)
                       if isinstance(t, torch.Tensor)})

    kept = pointers(v for k, v in obj.items() if k not in skip_entries)
    training = pointers(v for k, v in obj.items() if k in skip_entries)

    def points_into(ptrs: list[int], storage: torch.UntypedStorage) -> bool:
        start = storage.data_ptr()
        i = bisect.bisect_left(ptrs, start)
        return i < len(ptrs) and ptrs[i] < start + storage.nbytes()

    return {key for key, storage in roots.items()
            if storage.nbytes() and points_into(training, storage) and not points_into(kept, storage)}


def read_legacy(path: Path, skip_entries: tuple[str, ...], *, read_data: bool = True) -> tuple[object, int]:
    """Unpickle a legacy torch file; returns (object, bytes skipped for `skip_entries`' storages).

    `read_data=False` reads names, dtypes and shapes only: every storage is skipped (its tensors hold
    untouched memory), as for a config/checkpoint pairing check.
    """
    with open(path, "rb") as f:
        if safe_pickle.load(f) != MAGIC_NUMBER:
            raise safe_pickle.UnpicklingError("not a torch.save file (wrong magic number)")
        if safe_pickle.load(f) != PROTOCOL_VERSION:
            raise safe_pickle.UnpicklingError("unsupported torch.save protocol version")
        sys_info = safe_pickle.load(f)
        if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) != (sys.byteorder == "little"):
            raise safe_pickle.UnpicklingError("a big-endian legacy file: not supported")

        storages: dict[str, torch.UntypedStorage] = {}
        sizes: dict[str, int] = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
                raise safe_pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]}")
            _, storage_type, key, _location, numel, view = pid
            dtype = _storage_dtype(storage_type)
            size = torch._utils._element_size(dtype)
            if type(key) is not str or type(numel) is not int or numel < 0:
                raise safe_pickle.UnpicklingError("malformed storage reference")
            if key not in storages:  # allocated, not touched: costs no memory until its bytes are read
                storages[key], sizes[key] = torch.UntypedStorage(numel * size), size
            storage = storages[key]
            if view is not None:
                _view_key, offset, view_numel = view
                storage = storage[offset * size:(offset + view_numel) * size]
            return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)

        unpickler = safe_pickle.Unpickler(f, encoding="utf-8")
        unpickler.persistent_load = persistent_load
        obj = unpickler.load()
        keys = safe_pickle.load(f)
        if not isinstance(keys, list) or set(keys) != set(storages):
            raise safe_pickle.UnpicklingError("the storage list does not match the tensors")

        skip = _training_only(obj, skip_entries, storages)
        skipped = 0
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            storage = storages[key]
            nbytes = numel * sizes[key]
            if nbytes != storage.nbytes():
                raise safe_pickle.UnpicklingError(f"storage {key}: {nbytes} bytes in the file, {storage.nbytes()} expected")
            if key in skip or not read_data:
                f.seek(nbytes, 1)
                skipped += nbytes
                continue
            view = torch.empty(0, dtype=torch.uint8).set_(storage).numpy()
            if f.readinto(memoryview(view).cast("B")) != nbytes:
                raise EOFError(f"{path}: file ends inside storage {key}")
        if f.tell() > path.stat().st_size:
            raise EOFError(f"{path}: file ends inside the storages")
    return obj, skipped

