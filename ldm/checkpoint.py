"""Load CompVis checkpoints safely and strictly into our modules.

Safety: `.safetensors`, or `torch.load(weights_only=True)`; arbitrary unpickling only with the
explicit `trust_pickle=True` flag (never silently). Strictness: every learned weight must be present
with the right shape and nothing unknown may be left over; *known non-learned extras* (DDIM schedule
entries, EMA copies when EMA is off, first-stage training losses, `lvlb_weights`) are ignored and
listed in the load report. Both file hashes are recorded for run manifests.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ldm.schedule import BUFFER_NAMES

# Entries that are in released checkpoints but carry nothing we learn from (see the spec's last section).
KNOWN_EXTRA_PREFIXES = ("ddim_", "model_ema.", "loss.", "lvlb_weights", "first_stage_model.loss.")
TRUST_FLAG = "trust_pickle=True to ldm.load (CLI: `ldm-lab models convert --trust-pickle SRC DST.safetensors`)"
MAX_LISTED = 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the checkpoint and the config."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class LoadReport:
    """What `ldm.load` did: file hashes, ignored extras, EMA use, warnings (for run manifests)."""

    config_path: str
    ckpt_path: str
    config_sha256: str
    ckpt_sha256: str
    ckpt_format: str
    ema: str = "not applicable"
    ignored_keys: list[str] = field(default_factory=list)
    non_tensor_entries: list[str] = field(default_factory=list)
    schedule_from: str = "checkpoint"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > MAX_LISTED else ''})"


# ----------------------------------------------------------------------------
# Reading the file.
def read_checkpoint(ckpt_path: str | Path, *, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """Return (state_dict, names of non-tensor top-level entries, format) of a CompVis checkpoint."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), [], "safetensors"
        except Exception as err:  # safetensors raises its own SafetensorError for bad headers
            raise CheckpointError(f"{path}: not a readable .safetensors file ({err})") from err
    is_zip = zipfile.is_zipfile(path)
    if not is_zip:
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):  # a zip whose central directory is gone: cut short
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint (incomplete zip archive)")
        if head[:1] != b"\x80":  # pickle protocol >= 2 starts with PROTO 0x80
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (.ckpt/.pt zip or pickle) or .safetensors file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=is_zip)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path}: this checkpoint needs arbitrary unpickling (it stores Python objects, not only tensors); "
                f"loading it can run code. If you trust the file, pass {TRUST_FLAG}. Detail: {str(err).splitlines()[0]}"
            ) from err
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({err})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(err).__name__}: {err})") from err
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        others = sorted(str(k) for k in obj if k != "state_dict")
        obj = obj["state_dict"]
    else:
        others = []
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors (or a dict with a 'state_dict' entry)")
    return dict(obj), others, "torch"


# ----------------------------------------------------------------------------
# Strict, key-for-key loading.
def ema_key(param_name: str) -> str:
    """`model.diffusion_model.x.0.w` -> `model_ema.diffusion_modelx0w` (LitEma naming)."""
    return "model_ema." + param_name.removeprefix("model.").replace(".", "")


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], *, use_ema: bool,
                           report: LoadReport, has_schedule: bool) -> None:
    """Assign checkpoint tensors to `model` (built on the meta device) and fill in the report."""
    names = f"checkpoint {report.ckpt_path} and config {report.config_path}"
    expected = model.state_dict(keep_vars=True)
    state = dict(state)
    if use_ema:
        unet_params = [k for k in expected if k.startswith("model.diffusion_model.")]
        present = [k for k in unet_params if ema_key(k) in state]
        if present and len(present) < len(unet_params):
            missing = [ema_key(k) for k in unet_params if ema_key(k) not in state]
            raise CheckpointError(f"{names}: EMA weights incomplete, missing {_listing(missing)}")
        if present:
            for k in unet_params:
                state[k] = state.pop(ema_key(k))
            report.ema = "used (model_ema.* weights)"
        else:
            msg = f"use_ema is on but {report.ckpt_path} has no model_ema.* entries: sampling with the raw weights"
            warnings.warn(msg, stacklevel=3)
            report.warnings.append(msg)
            report.ema = "requested but absent: raw weights used"
    elif "model.diffusion_model.out.0.weight" in expected:
        report.ema = "off"

    missing = [k for k in expected if k not in state]
    aliased = [k for k in missing if k.startswith("cond_stage_model.") and
               "first_stage_model." + k.removeprefix("cond_stage_model.") in state and
               getattr(model, "cond_stage_model", None) is getattr(model, "first_stage_model", None)]
    schedule = [k for k in missing if k in BUFFER_NAMES]
    missing = [k for k in missing if k not in aliased and k not in schedule]
    unexpected = [k for k in state if k not in expected]
    ignored = [k for k in unexpected if k.startswith(KNOWN_EXTRA_PREFIXES)]
    unknown = [k for k in unexpected if k not in ignored]
    if missing or unknown:
        raise CheckpointError(
            f"{names} do not match: "
            + (f"missing learned weights {_listing(missing)}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"unknown entries {_listing(unknown)}" if unknown else "")
        )
    bad_shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if bad_shapes:
        raise CheckpointError(f"{names} do not match: {len(bad_shapes)} tensors differ in shape, e.g. "
                              + "; ".join(bad_shapes[:5]))
    if schedule:
        if has_schedule:
            raise CheckpointError(f"{names}: checkpoint lacks schedule buffers {schedule}")
        report.schedule_from = "config (not in checkpoint)"
    report.ignored_keys = sorted(ignored)

    to_load = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    for k in aliased:
        to_load[k] = to_load["first_stage_model." + k.removeprefix("cond_stage_model.")]
    for k in schedule:
        to_load[k] = expected[k]
    model.load_state_dict(to_load, strict=True, assign=True)
