"""Save a state_dict the way the released CompVis checkpoints are saved: as PyTorch Lightning checkpoints.

The released `.ckpt` files come from Lightning's trainer (CompVis trained with pytorch-lightning 1.4):
`state_dict` (an OrderedDict carrying `_metadata`) beside `epoch`, `global_step`,
`pytorch-lightning_version`, `callbacks` (keyed by the `ModelCheckpoint` class itself), `optimizer_states`
(AdamW moments of the trained weights, twice their size) and `lr_schedulers`; some use the pre-1.6 legacy
serialization. Tests and benchmarks write our random models in that layout, so that loading is tested on
the files users have. Stand-in classes are registered under Lightning's module names only while
`torch.save` runs: the bytes name `pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint` exactly as
the released files do, and neither writing nor reading needs Lightning.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch

PL_VERSION = "1.4.2"


class ModelCheckpoint:
    """Stand-in for `pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint` (pickled by name)."""


class AttributeDict(dict):
    """Stand-in for `pytorch_lightning.utilities.parsing.AttributeDict` (Lightning's hparams container)."""


STAND_INS = {"pytorch_lightning.callbacks.model_checkpoint": ModelCheckpoint,
             "pytorch_lightning.utilities.parsing": AttributeDict}


@contextlib.contextmanager
def lightning_names():
    """Make the stand-ins picklable under Lightning's names for the duration of the block."""
    saved = {}
    modules = {}
    for module_name, cls in STAND_INS.items():
        parts = module_name.split(".")
        for i in range(1, len(parts) + 1):
            modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        setattr(modules[module_name], cls.__name__, cls)
    originals = {cls: cls.__module__ for cls in STAND_INS.values()}
    try:
        for name, module in modules.items():
            saved[name] = sys.modules.get(name)
            sys.modules[name] = module
        for module_name, cls in STAND_INS.items():
            cls.__module__ = module_name
        yield
    finally:
        for cls, module in originals.items():
            cls.__module__ = module
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def adam_state(params: list[torch.Tensor], *, step: int = 1000, seed: int = 0) -> dict:
    """An AdamW `state_dict()` for `params`: exp_avg / exp_avg_sq per tensor (2x their bytes)."""
    gen = torch.Generator().manual_seed(seed)
    state = {i: {"step": step, "exp_avg": 1e-4 * torch.randn(p.shape, generator=gen),
                 "exp_avg_sq": 1e-8 * torch.rand(p.shape, generator=gen)} for i, p in enumerate(params)}
    group = {"lr": 1e-6, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False,
             "params": list(range(len(params)))}
    return {"state": state, "param_groups": [group]}


def lightning_checkpoint(state_dict: dict[str, torch.Tensor], *, optimizer: bool = True, hparams: bool = False,
                         trained_prefix: str = "model.diffusion_model.", epoch: int = 3,
                         global_step: int = 12345) -> dict:
    """The top-level dict Lightning 1.4 saves around `state_dict` (call inside `lightning_names()`).

    `optimizer_states` holds AdamW moments of the tensors whose key starts with `trained_prefix` (the UNet of
    an LDM; "" = every floating tensor, as for a first stage trained alone).
    """
    sd = OrderedDict(state_dict)
    sd._metadata = OrderedDict([("", {"version": 1}), ("model", {"version": 1})])
    ckpt = {"epoch": epoch, "global_step": global_step, "pytorch-lightning_version": PL_VERSION,
            "state_dict": sd,
            "callbacks": {ModelCheckpoint: {"monitor": "val/loss_simple_ema", "best_model_score": torch.tensor(0.0421),
                                            "best_model_path": "logs/checkpoints/epoch=000003.ckpt",
                                            "current_score": torch.tensor(0.0433), "dirpath": "logs/checkpoints"}}}
    if optimizer:
        trained = [v for k, v in state_dict.items() if k.startswith(trained_prefix) and v.is_floating_point()]
        ckpt["optimizer_states"] = [adam_state(trained)]
        ckpt["lr_schedulers"] = [{"base_lrs": [1e-6], "last_epoch": global_step, "_step_count": global_step + 1,
                                  "verbose": False, "_get_lr_called_within_step": False, "_last_lr": [1e-6],
                                  "lr_lambdas": [None]}]
    if hparams:
        ckpt["hparams_name"] = "kwargs"
        ckpt["hyper_parameters"] = AttributeDict(base_learning_rate=1e-6, monitor="val/loss_simple_ema")
    return ckpt


def save_lightning_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], *, legacy: bool = False,
                              optimizer: bool = True, hparams: bool = False,
                              trained_prefix: str = "model.diffusion_model.") -> Path:
    """Write `state_dict` in the released Lightning layout (zip, or the legacy format with `legacy=True`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lightning_names():
        ckpt = lightning_checkpoint(state_dict, optimizer=optimizer, hparams=hparams, trained_prefix=trained_prefix)
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path
