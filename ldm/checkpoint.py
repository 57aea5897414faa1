"""Load CompVis checkpoints safely and strictly into our modules.

Safety: `.safetensors`, or a PyTorch checkpoint (zip or the pre-1.6 legacy stream) read with the restricted
unpickler of `ldm.safe_pickle`: the released files are PyTorch Lightning checkpoints that pickle Lightning
objects (a `ModelCheckpoint` callback, optimizer state, ...); those load as inert placeholders that are never
imported or called, and only `state_dict` is used. Arbitrary unpickling only with the explicit
`trust_pickle=True` flag (for exotic files; no released checkpoint needs it). Zip files are memory-mapped,
so entries that are not used (optimizer moments, the raw weights when EMA is sampled) are never read into
memory. Strictness: every learned weight must be present with the right shape and nothing unknown may be
left over; *known non-learned extras* (DDIM schedule entries, EMA copies when EMA is off, first-stage
training losses, `lvlb_weights`) are ignored and listed in the load report.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ldm import safe_pickle
from ldm.architecture import differences
from ldm.legacy_checkpoint import read_legacy
from ldm.schedule import BUFFER_NAMES

# Entries that are in released checkpoints but carry nothing we learn from (see the spec's last section).
KNOWN_EXTRA_PREFIXES = ("ddim_", "model_ema.", "loss.", "lvlb_weights", "first_stage_model.loss.")
# Top-level Lightning entries that hold training state only: never used, never walked.
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "native_amp_scaling_state", "amp_scaling_state")
TRUST_FLAG = "trust_pickle=True to ldm.load (CLI: `ldm-lab models convert --trust-pickle SRC DST.safetensors`)"
MAX_LISTED = 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the checkpoint and the config."""


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
    other_entries: list[str] = field(default_factory=list)  # "callbacks: ModelCheckpoint (not executed)", ...
    schedule_from: str = "checkpoint"
    dtype: str = "float32"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Checkpoint:
    """A checkpoint file read into memory (or mapped): its state_dict and what else it held."""

    state: dict[str, torch.Tensor]
    other_entries: list[str]  # one "name: what it was" line per top-level entry beside state_dict
    format: str               # "torch-zip", "torch-legacy" or "safetensors"
    skipped_bytes: int = 0    # legacy files: bytes of training-state storages never read (zip: mapped, unread)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > MAX_LISTED else ''})"


# ----------------------------------------------------------------------------
# Reading the file.
def read_checkpoint(ckpt_path: str | Path, *, trust_pickle: bool = False, shapes_only: bool = False) -> Checkpoint:
    """Read a CompVis/Lightning checkpoint (`.ckpt`/`.pt` zip or legacy pickle, or `.safetensors`).

    `shapes_only`: the tensors' values may be left unread (legacy files skip every storage; zip files are
    mapped anyway): for checks of names and shapes.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return Checkpoint(load_file(str(path)), [], "safetensors")
        except Exception as err:  # safetensors raises its own SafetensorError for bad headers
            raise CheckpointError(f"{path}: not a readable .safetensors file ({err})") from err
    is_zip = _check_container(path)
    skipped = 0
    try:
        if trust_pickle:
            obj = torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
        elif is_zip:  # memory-mapped: entries that are not used are never read
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_pickle, mmap=True)
        else:  # torch would read every storage; ours skips those of the training state
            obj, skipped = read_legacy(path, TRAINING_STATE, read_data=not shapes_only)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: not loaded ({err}); nothing in it was executed") from err
    except Exception as err:  # torch reports a damaged file as RuntimeError/EOFError/KeyError/...
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(err).__name__}: {err})") from err
    fmt = "torch-zip" if is_zip else "torch-legacy"
    if isinstance(obj, Mapping) and "state_dict" in obj:
        state, others = obj["state_dict"], {str(k): v for k, v in obj.items() if k != "state_dict"}
    else:
        state, others = obj, {}
    if not isinstance(state, Mapping):
        hint = (f"; the restricted unpickler does not build objects: if you trust the file, pass {TRUST_FLAG}"
                if isinstance(state, safe_pickle.Inert) else "")
        raise CheckpointError(f"{path}: expected a state_dict of tensors (or a dict with a 'state_dict' entry), "
                              f"found {_what(state)}{hint}")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or type(key) is not str:
            raise CheckpointError(f"{path}: state_dict entry {key!r} is {_what(value)}, expected a tensor")
    return Checkpoint(dict(state), [describe_entry(k, v) for k, v in others.items()], fmt, skipped)


def checkpoint_shapes(ckpt_path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every state_dict tensor, without reading weights (safetensors: the header only)."""
    path = Path(ckpt_path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as err:
            raise CheckpointError(f"{path}: not a readable .safetensors file ({err})") from err
    return {k: tuple(v.shape) for k, v in read_checkpoint(path, shapes_only=True).state.items()}


def _check_container(path: Path) -> bool:
    """True for a torch zip file, False for a legacy pickle stream; anything else is an error."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({err})") from err
        if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
            raise CheckpointError(f"{path}: a TorchScript archive, not a checkpoint (it holds code); not loaded")
        if not any(n.endswith("data.pkl") for n in names):
            raise CheckpointError(f"{path}: a zip file without data.pkl, not a PyTorch checkpoint")
        return True
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):  # a zip whose central directory is gone: cut short
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint (incomplete zip archive)")
    if head[:1] != b"\x80":  # pickle protocol >= 2 starts with PROTO 0x80
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (.ckpt/.pt zip or pickle) or .safetensors file")
    return False


def _what(value) -> str:
    if isinstance(value, (safe_pickle.Placeholder, safe_pickle.Inert)):
        return f"a {value.short_name} object (not executed)"
    return f"a {type(value).__name__}"


def describe_entry(name: str, value, *, max_nodes: int = 10_000) -> str:
    """One line for the load report: what a top-level entry beside state_dict was (never executed)."""
    if name in TRAINING_STATE:
        return f"{name}: skipped"
    found = {item.short_name for item in safe_pickle.walk(value, max_nodes=max_nodes)  # classes the file names
             if isinstance(item, (safe_pickle.Placeholder, safe_pickle.Inert))}
    if found:
        return f"{name}: {', '.join(sorted(found))} (not executed)"
    if isinstance(value, torch.Tensor):
        return f"{name}: tensor {list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return f"{name}: {text if len(text) <= 60 else text[:57] + '...'}"
    size = f" of {len(value)}" if hasattr(value, "__len__") else ""
    return f"{name}: {type(value).__name__}{size}"


# ----------------------------------------------------------------------------
# Strict, key-for-key loading.
def ema_key(param_name: str) -> str:
    """`model.diffusion_model.x.0.w` -> `model_ema.diffusion_modelx0w` (LitEma naming)."""
    return "model_ema." + param_name.removeprefix("model.").replace(".", "")


@dataclass
class KeyMatch:
    """How checkpoint entries map onto a model's state_dict (`match_keys`); no tensor is touched."""

    ema: str                      # the load report's EMA line
    ema_keys: dict[str, str]      # model key -> checkpoint key it takes (EMA weights)
    aliased: list[str]            # cond_stage_model.* keys filled from the shared first stage
    schedule: list[str]           # schedule buffers taken from the config
    ignored: list[str]            # known extras left unused


def match_keys(expected: Mapping[str, tuple], found: Mapping[str, tuple], *, use_ema: bool, names: str,
               shared_first_stage: bool, has_schedule: bool) -> KeyMatch:
    """Match checkpoint names and shapes (`found`) to the model's (`expected`) by the strict rules of the
    module docstring; CheckpointError (one line, the architecture difference first) when they do not fit."""
    ema_keys, ema = {}, "not applicable"
    if use_ema:
        unet_params = [k for k in expected if k.startswith("model.diffusion_model.")]
        present = [k for k in unet_params if ema_key(k) in found]
        if present and len(present) < len(unet_params):
            missing = [ema_key(k) for k in unet_params if ema_key(k) not in found]
            _mismatch(names, expected, found, f"EMA weights incomplete, missing {_listing(missing)}",
                      f"{len(missing)} EMA weights missing")
        ema_keys = {k: ema_key(k) for k in unet_params} if present else {}
        ema = "used (model_ema.* weights)" if present else "requested but absent: raw weights used"
    elif "model.diffusion_model.out.2.weight" in expected:
        ema = "off"
    view = {k: v for k, v in found.items() if k not in ema_keys} | {k: found[c] for k, c in ema_keys.items()}
    used = set(ema_keys.values())

    missing = [k for k in expected if k not in view]
    aliased = [k for k in missing if shared_first_stage and k.startswith("cond_stage_model.") and
               "first_stage_model." + k.removeprefix("cond_stage_model.") in view]
    schedule = [k for k in missing if k in BUFFER_NAMES]
    missing = [k for k in missing if k not in aliased and k not in schedule]
    unexpected = [k for k in found if k not in expected and k not in used]
    ignored = [k for k in unexpected if k.startswith(KNOWN_EXTRA_PREFIXES)]
    unknown = [k for k in unexpected if k not in ignored]
    if missing or unknown:
        _mismatch(names, expected, view, "; ".join(
            ([f"missing learned weights {_listing(missing)}"] if missing else [])
            + ([f"unknown entries {_listing(unknown)}"] if unknown else [])),
            ", ".join(([f"{len(missing)} weights missing"] if missing else [])
                      + ([f"{len(unknown)} unknown entries"] if unknown else [])))
    bad_shapes = [f"{k}: checkpoint {tuple(view[k])} vs config {tuple(expected[k])}"
                  for k in expected if k in view and tuple(view[k]) != tuple(expected[k])]
    if bad_shapes:
        _mismatch(names, expected, view, f"{len(bad_shapes)} tensors differ in shape, e.g. " + "; ".join(bad_shapes[:5]),
                  f"{len(bad_shapes)} tensors of another shape")
    if schedule and has_schedule:
        raise CheckpointError(f"{names}: checkpoint lacks schedule buffers {schedule}")
    return KeyMatch(ema, ema_keys, aliased, schedule, sorted(ignored))


def _mismatch(names: str, expected: Mapping[str, tuple], found: Mapping[str, tuple], detail: str, counts: str):
    """Raise the mismatch in one line: the architecture facts that differ when there are any (the real
    reason, with `counts` of the tensors involved), else `detail` (which keys or shapes)."""
    facts = differences(expected, found)
    raise CheckpointError(f"{names} do not match: " + (f"{'; '.join(facts)} ({counts})" if facts else detail))


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], *, use_ema: bool,
                           report: LoadReport, has_schedule: bool, dtype: torch.dtype = torch.float32) -> None:
    """Assign checkpoint tensors to `model` (built on the meta device) and fill in the report.

    `state` is consumed (emptied) so that each tensor is cast to `dtype` (network weights; top-level schedule
    buffers stay float32) and its source freed one at a time: no second full copy of the weights.
    """
    names = f"checkpoint {report.ckpt_path} and config {report.config_path}"
    expected = model.state_dict(keep_vars=True)
    shared = getattr(model, "cond_stage_model", None) is getattr(model, "first_stage_model", None)
    match = match_keys({k: tuple(v.shape) for k, v in expected.items()}, {k: tuple(v.shape) for k, v in state.items()},
                       use_ema=use_ema, names=names, shared_first_stage=shared, has_schedule=has_schedule)
    for k, source in match.ema_keys.items():
        state[k] = state.pop(source)
    if use_ema and not match.ema_keys:
        msg = f"use_ema is on but {report.ckpt_path} has no model_ema.* entries: sampling with the raw weights"
        warnings.warn(msg, stacklevel=3)
        report.warnings.append(msg)
    report.ema = match.ema
    if match.schedule:
        report.schedule_from = "config (not in checkpoint)"
    report.ignored_keys = match.ignored
    aliased, schedule = match.aliased, match.schedule

    to_load = {}
    for k in [k for k in state if k in expected]:
        value, network = state.pop(k), "." in k and expected[k].is_floating_point()
        to_load[k] = value.to(dtype if network else expected[k].dtype)
    state.clear()
    report.dtype = str(dtype).removeprefix("torch.")
    for k in aliased:
        to_load[k] = to_load["first_stage_model." + k.removeprefix("cond_stage_model.")]
    for k in schedule:
        to_load[k] = expected[k]
    model.load_state_dict(to_load, strict=True, assign=True)
