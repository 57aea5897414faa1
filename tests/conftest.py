"""Shared fixtures: tiny CompVis-format checkpoints with random weights, built through the real loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ldm
from ldm.checkpoint import ema_key
from ldm_lab import checkpoints
from ldm_lab.checkpoints import CompVisModel
from ldm_lab.demo_models import demo_state_dict as random_state_dict  # scaled seeded random init

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIGS = {family: REPO / "configs" / "tiny" / f"{family}.yaml" for family in ("inpainting", "superres", "txt2img")}
TINY_VOCAB = REPO / "configs" / "tiny" / "vocab.txt"
SPEC = REPO.parent / "shared" / "spec"


def make_tiny_checkpoint(family: str, directory: Path, *, seed: int = 0, ema: bool = False,
                         extra: dict[str, torch.Tensor] | None = None) -> tuple[Path, Path, dict]:
    """Save a CompVis-style `{"state_dict": ...}` for a tiny family; return (config, ckpt, state)."""
    config = TINY_CONFIGS[family]
    model = ldm.build_model(ldm.load_config(config))
    state = random_state_dict(model, seed)
    if family == "inpainting":  # cond_stage_model IS the first stage: identical tensors under both prefixes
        for k in list(state):
            if k.startswith("cond_stage_model."):
                state[k] = state["first_stage_model." + k.removeprefix("cond_stage_model.")]
    if ema:
        gen = torch.Generator().manual_seed(seed + 1000)
        for k in [k for k in state if k.startswith("model.diffusion_model.")]:
            state[ema_key(k)] = state[k] + 0.01 * torch.randn(state[k].shape, generator=gen)
        state["model_ema.decay"] = torch.tensor(0.9999)
        state["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    state.update(extra or {})
    ckpt = directory / f"tiny-{family}.ckpt"
    torch.save({"state_dict": state, "global_step": 1, "epoch": 0}, ckpt)
    return config, ckpt, state


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    directory = tmp_path_factory.mktemp("tiny-ckpts")
    return {
        "inpainting": make_tiny_checkpoint("inpainting", directory, seed=1, ema=True),
        "superres": make_tiny_checkpoint("superres", directory, seed=2, ema=True),
        "txt2img": make_tiny_checkpoint("txt2img", directory, seed=3),
    }


@pytest.fixture(scope="session")
def tiny_models(tiny_ckpts) -> dict[str, ldm.LatentDiffusion]:
    return {family: ldm.load(config, ckpt, tokenizer=TINY_VOCAB if family == "txt2img" else None)
            for family, (config, ckpt, _) in tiny_ckpts.items()}


@pytest.fixture
def tiny_entry(monkeypatch):
    """A registry entry that uses the tiny SR config, so the real fetch + load-check path runs fast."""
    entry = CompVisModel("tiny-sr", "https://example.invalid/tiny_sr.zip", "ldm/tiny-sr/model.ckpt",
                         "configs/tiny/superres.yaml", "superres")
    monkeypatch.setitem(checkpoints.MODELS, "tiny-sr", entry)
    return entry
