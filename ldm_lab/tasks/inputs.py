"""Inputs of a run: dataset and model arguments checked and opened, hashes and versions recorded.

Every failure names the argument and the file: a missing path, a dataset the reader rejects, a config for
another task family (checked from the YAML before the checkpoint is read), or a config/checkpoint pair
that does not match (the strict loader's error, which lists the offending keys and names both files).
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

import ldm
from ldm.tokenizer import resolve_vocab
from ldm_lab.data.fingerprint import cached_sha256

# task -> (cond_stage, conditioning_key, what the task needs)
FAMILIES = {
    "inpainting": ("first_stage", "concat",
                   "an inpainting model: concat conditioning on the first stage's latent of the masked image "
                   "(cond_stage_config: __is_first_stage__), e.g. inpainting_big"),
    "superres": ("identity", "concat",
                 "a super-resolution model: the LR image concatenated (cond_stage_config: torch.nn.Identity), "
                 "e.g. bsr_sr"),
    "text2img": ("bert", "crossattn",
                 "a text-to-image model: BERTEmbedder cross-attention, e.g. txt2img-1p4B-eval"),
}
DEMO_HINT = {"models/demo": "the trained demo checkpoints are committed: `git checkout -- models/demo`, or "
                            "retrain them with scripts/train_demo_models.py",
             "data/demo": "the demo datasets are made by `ldm-lab prepare demo`"}


def _hint(path: Path) -> str:
    text = path.as_posix()
    return "".join(f" ({hint})" for key, hint in DEMO_HINT.items() if key in text)


def require_file(path: str | Path, arg: str) -> Path:
    """`path` as a Path if it is a file, else FileNotFoundError naming the argument."""
    path = Path(path)
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"`{arg}` {state}: {path}{_hint(path)}")
    return path


def require_dir(path: str | Path, arg: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "not found"
        raise FileNotFoundError(f"`{arg}` {state}: {path}{_hint(path)}")
    return path


def open_dataset(factory, arg: str, path: str | Path):
    """Build a dataset reader; its errors are re-raised with the argument name (and the demo hint)."""
    try:
        return factory()
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        raise type(err)(f"`{arg}` {path}: {err}{_hint(Path(path))}") from None


def dataset_info(data, path: str | Path) -> dict:
    """What run.json records about the dataset (its fingerprint is part of the resume key)."""
    return {"path": str(path), "fingerprint": data.fingerprint(), "n": len(data),
            "selection": data.selection_params(), "skipped": data.skipped, "stray": data.stray}


def task_config(task: str, config: str | Path, arg: str = "config") -> ldm.DiffusionConfig:
    """Parse the CompVis YAML and check that it describes a model for `task`."""
    path = require_file(config, arg)
    try:
        cfg = ldm.load_config(path)
    except ldm.ConfigError as err:
        raise ValueError(f"`{arg}`: {err}") from None
    cond_stage, key, needs = FAMILIES[task]
    if not isinstance(cfg, ldm.DiffusionConfig) or (cfg.cond_stage, cfg.conditioning_key) != (cond_stage, key):
        found = ("a first-stage autoencoder" if not isinstance(cfg, ldm.DiffusionConfig) else
                 f"a model with cond_stage {cfg.cond_stage!r} and conditioning {cfg.conditioning_key!r}")
        raise ValueError(f"`{arg}` {path} describes {found}; the {task} task needs {needs}")
    return cfg


def size_multiple(cfg: ldm.DiffusionConfig) -> int:
    """Image sides must be multiples of this: first-stage factor x UNet downsampling (2^(levels-1))."""
    return cfg.first_stage.downsample_factor * 2 ** (len(cfg.unet.channel_mult) - 1)


def file_hash(path: str | Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) across runs (large checkpoints hash once)."""
    return cached_sha256([Path(path)])[Path(path)][1]


def vocab_file(tokenizer: str | Path | None, config: Path) -> Path:
    """The WordPiece vocab: `tokenizer` if given, else a vocab.txt beside the config, else ldm's lookup."""
    if tokenizer in (None, "") and (config.parent / "vocab.txt").is_file():
        return config.parent / "vocab.txt"
    try:
        return resolve_vocab(None if tokenizer in (None, "") else tokenizer)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"`tokenizer`: {err}") from None


def _misfit(err: ldm.CheckpointError, config_arg: str, ckpt_arg: str) -> ValueError:
    return ValueError(f"`{ckpt_arg}` does not fit `{config_arg}`: {err}")


def check_pairing(config: str | Path, ckpt: str | Path, config_arg: str, ckpt_arg: str) -> None:
    """The checkpoint must fit the config (names and shapes only, nothing loaded): one line naming both
    arguments and the architecture difference (`ldm.check_pairing`). For `check_only` runs: a run that
    loads the model gets the same error from `load_task_model`, before the folder is touched."""
    try:
        ldm.check_pairing(config, require_file(ckpt, ckpt_arg))
    except ldm.CheckpointError as err:
        raise _misfit(err, config_arg, ckpt_arg) from None


def load_task_model(task: str, config: Path, ckpt: str | Path, *, config_arg: str, ckpt_arg: str,
                    device: torch.device, dtype: torch.dtype, vocab: Path | None = None,
                    channels_last: bool = False, compile_unet: bool = False) -> ldm.LatentDiffusion:
    """`ldm.load` (strict, safe) with errors that name the argument; text models get `vocab` checked;
    then `ldm.optimize` (channels_last, torch.compile of the UNet) when asked for."""
    ckpt = require_file(ckpt, ckpt_arg)
    try:
        model = ldm.load(config, ckpt, device=device, dtype=dtype)
    except ldm.CheckpointError as err:
        raise _misfit(err, config_arg, ckpt_arg) from None
    if vocab is not None:
        tokenizer = model.set_tokenizer(str(vocab))
        size = model.config.text_encoder.vocab_size
        if tokenizer.vocab_size > size:
            raise ValueError(f"`tokenizer` {vocab} has {tokenizer.vocab_size} tokens but the model's embedding "
                             f"holds {size}; pass the vocab.txt the model was trained with")
    return ldm.optimize(model, channels_last=channels_last, compile_unet=compile_unet)


def environment() -> dict:
    """Versions and git commit recorded in run.json."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("ldm-lab", "numpy", "pillow", "scikit-image", "scipy", "torch-fidelity", "lpips", "open_clip_torch"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {"versions": versions, "git": _git_state()}


def _git_state() -> dict:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}
