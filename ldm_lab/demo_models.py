"""Demo checkpoints of the tiny configs (`configs/tiny/`), CompVis format: trained ones and random ones.

`demo_models()` returns the trained checkpoints committed in `models/demo/` (made by
`scripts/train_demo_models.py` from scikit-image's photos; the demo and the notebooks' defaults use them),
after checking them against `models/demo/demo_models.json`: a missing or modified checkpoint, or a config
changed since training, is an error that says how to restore or retrain, never a silent substitute.

`ensure_random_models()` writes the seeded random models the test suite uses. Each family is built
through `ldm.build_model` and initialised from its own seeded CPU generator with a scaled init (norm gains
around 1, other weights ~ N(0, 1/fan_in)) so decoded images have structure and contrast instead of a flat
grey; the noise schedule is kept. The file is `{"state_dict": ...}` like an upstream checkpoint, with `model_ema.*` copies when the config samples with EMA weights, and
`cond_stage_model.*` equal to `first_stage_model.*` for the inpainting family (upstream holds both).
`models_dir/random_models.json` records version, seeds and hashes: a second call is a no-op unless a config
changed or a checkpoint is missing or modified. Numbers from these models measure nothing but the pipeline.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

import ldm
from ldm.checkpoint import ema_key
from ldm_lab.data.files import write_bytes_atomic
from ldm_lab.data.fingerprint import cached_sha256
from ldm_lab.results import read_json, write_json

RANDOM_VERSION = 2
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs" / "tiny"
DEMO_DIR = PROJECT_ROOT / "models" / "demo"
SEEDS = {"inpainting": 1, "superres": 2, "txt2img": 3}
STAMP, RANDOM_STAMP = "demo_models.json", "random_models.json"
RETRAIN = "scripts/train_demo_models.py"


def demo_state_dict(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Scaled random init of every float parameter (norm gains ~1 + 0.1 N(0,1), rest N(0, 1/fan_in))."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        if name in ldm.schedule.BUFFER_NAMES or not value.is_floating_point():
            state[name] = value.clone()
            continue
        noise = torch.randn(value.shape, generator=gen)
        if value.ndim == 1 and ("norm" in name or "in_layers.0" in name or "out_layers.0" in name
                                or name.endswith(("out.0.weight", "out.0.bias"))):
            state[name] = (1.0 if name.endswith("weight") else 0.0) + 0.1 * noise
        else:
            fan_in = value[0].numel() if value.ndim > 1 else 16
            state[name] = noise * fan_in ** -0.5
    return state


def add_released_extras(cfg: ldm.DiffusionConfig, state: dict[str, torch.Tensor], *, num_updates: int = 0,
                        decay: float = 0.9999, share_ema: bool = False) -> None:
    """What an upstream state_dict holds beside the model's own tensors: the first stage again as
    `cond_stage_model.*` (one module under both prefixes) and `model_ema.*` copies when EMA is sampled
    (`share_ema`: the same tensors as `model.*`, stored once, for checkpoints whose weights are the EMA)."""
    for key in [k for k in state if k.startswith("cond_stage_model.")]:
        if cfg.cond_stage == "first_stage":
            state[key] = state["first_stage_model." + key.removeprefix("cond_stage_model.")]
    if cfg.use_ema:
        for key in [k for k in state if k.startswith("model.diffusion_model.")]:
            state[ema_key(key)] = state[key] if share_ema else state[key].clone()
        state["model_ema.decay"] = torch.tensor(decay)
        state["model_ema.num_updates"] = torch.tensor(num_updates, dtype=torch.int32)


def build_demo_checkpoint(family: str, config: Path) -> bytes:
    """The serialized `{"state_dict": ...}` of one family (deterministic bytes for a given config)."""
    cfg = ldm.load_config(config)
    model = ldm.build_model(cfg)
    state = demo_state_dict(model, SEEDS[family])
    add_released_extras(cfg, state)
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "global_step": 0}, buffer)
    return buffer.getvalue()


def demo_models(models_dir: str | Path = DEMO_DIR) -> dict[str, tuple[Path, Path]]:
    """The trained demo checkpoints, checked against `demo_models.json`; returns {family: (config, checkpoint)}.

    Raises FileNotFoundError for a missing file and ValueError for a checkpoint whose sha256 differs from the
    record or a tiny config changed since training, each naming the file and the way back.
    """
    folder = Path(models_dir)
    stamp_path = folder / STAMP
    retrain = f"`.venv/bin/python {RETRAIN} --out {folder.as_posix()}`"
    restore = f"restore the committed files with `git checkout -- {folder.as_posix()}` or retrain them with {retrain}"
    if not stamp_path.is_file():
        raise FileNotFoundError(f"demo model record not found: {stamp_path}; {restore}")
    stamp = read_json(stamp_path)
    out = {}
    for family in SEEDS:
        config, ckpt, entry = CONFIG_DIR / f"{family}.yaml", folder / f"{family}.ckpt", stamp.get(family)
        if not entry:
            raise ValueError(f"{stamp_path} has no entry for {family!r}; {restore}")
        if not ckpt.is_file():
            raise FileNotFoundError(f"demo checkpoint not found: {ckpt}; {restore}")
        if cached_sha256([ckpt])[ckpt][1] != entry.get("checkpoint_sha256"):
            raise ValueError(f"demo checkpoint {ckpt} is not the one recorded in {stamp_path} (sha256 differs); {restore}")
        if cached_sha256([config])[config][1] != entry.get("config_sha256"):
            raise ValueError(f"{config} changed since the demo models were trained (sha256 differs from "
                             f"{stamp_path}); restore it with `git checkout -- {config.relative_to(PROJECT_ROOT).as_posix()}` "
                             f"or retrain with {retrain}")
        out[family] = (config, ckpt)
    return out


def ensure_random_models(models_dir: str | Path) -> dict[str, tuple[Path, Path]]:
    """Create (if missing or stale) the three seeded random checkpoints; returns {family: (config, checkpoint)}."""
    folder = Path(models_dir)
    stamp_path = folder / RANDOM_STAMP
    stamp = read_json(stamp_path) if stamp_path.is_file() else {}
    if stamp.get("version") != RANDOM_VERSION:
        stamp = {"version": RANDOM_VERSION}
    out, changed = {}, False
    for family, seed in SEEDS.items():
        config, ckpt = CONFIG_DIR / f"{family}.yaml", folder / f"{family}.ckpt"
        if not config.is_file():
            raise FileNotFoundError(f"tiny config not found: {config} (it ships in the repository's configs/tiny/)")
        config_sha = cached_sha256([config])[config][1]
        entry = stamp.get(family, {})
        fresh = (ckpt.is_file() and entry.get("config_sha256") == config_sha and entry.get("seed") == seed
                 and cached_sha256([ckpt])[ckpt][1] == entry.get("checkpoint_sha256"))
        if not fresh:
            write_bytes_atomic(ckpt, build_demo_checkpoint(family, config))
            stamp[family] = {"config": str(config.name), "config_sha256": config_sha, "seed": seed,
                             "checkpoint_sha256": cached_sha256([ckpt])[ckpt][1]}
            changed = True
        out[family] = (config, ckpt)
    if changed:
        write_json(stamp_path, stamp)
    return out
