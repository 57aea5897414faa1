"""`ldm.load`: original CompVis config.yaml + checkpoint -> a ready-to-sample model."""

from __future__ import annotations

from pathlib import Path

import torch

from ldm.autoencoder import Autoencoder, AutoencoderConfig
from ldm.checkpoint import (
    CheckpointError,
    LoadReport,
    checkpoint_shapes,
    load_state_dict_strict,
    match_keys,
    read_checkpoint,
)
from ldm.config import DiffusionConfig, load_config
from ldm.diffusion import LatentDiffusion
from ldm.hashing import file_sha256


def build_model(cfg: DiffusionConfig | AutoencoderConfig) -> LatentDiffusion | Autoencoder:
    """Instantiate the module for a typed config (random init, CPU float32 unless in a device context)."""
    if isinstance(cfg, DiffusionConfig):
        return LatentDiffusion(cfg)
    if isinstance(cfg, AutoencoderConfig):
        return Autoencoder(cfg)
    raise TypeError(f"`cfg` must be a DiffusionConfig or AutoencoderConfig, got {type(cfg).__name__}")


def load(config: str | Path, ckpt: str | Path, *, device: str | torch.device = "cpu",
         dtype: torch.dtype = torch.float32, use_ema: bool | None = None, trust_pickle: bool = False,
         tokenizer: str | Path | None = None) -> LatentDiffusion | Autoencoder:
    """Load an original CompVis model (LatentDiffusion or first-stage autoencoder) strictly.

    Args:
        use_ema: sample with the EMA weights (`model_ema.*`); None = the config's `use_ema`.
        dtype: weight dtype of the networks, cast tensor by tensor while loading; schedule buffers stay float32.
        trust_pickle: unpickle without restrictions (runs code the file names). Not needed for the released
            CompVis/Lightning checkpoints, which load through the restricted unpickler of `ldm.safe_pickle`.
        tokenizer: vocab.txt (or folder) for text models; resolved lazily when None.
    The returned model carries `model.load_report` (hashes, ignored keys, other entries, EMA, warnings).
    The model is built on the meta device and the checkpoint's tensors are assigned (zip files stay
    memory-mapped), so loading never holds a second full copy of the weights.
    """
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"`dtype` must be torch.float32, float16 or bfloat16, got {dtype}")
    cfg = load_config(config)
    checkpoint = read_checkpoint(ckpt, trust_pickle=trust_pickle)
    state = checkpoint.state
    report = LoadReport(config_path=str(config), ckpt_path=str(ckpt), config_sha256=file_sha256(config),
                        ckpt_sha256=file_sha256(ckpt), ckpt_format=checkpoint.format,
                        other_entries=checkpoint.other_entries)

    with torch.device("meta"):
        model = build_model(cfg)
    diffusion = isinstance(cfg, DiffusionConfig)
    has_schedule = diffusion and "betas" in state
    config_betas = model.betas.clone() if diffusion else None  # the schedule buffers are real tensors, not meta
    ema = (cfg.use_ema if use_ema is None else use_ema) if diffusion else False
    load_state_dict_strict(model, state, use_ema=ema, report=report, dtype=dtype, has_schedule=has_schedule)
    del checkpoint, state
    if has_schedule:  # after the names and shapes: a model of another architecture says that first
        _check_schedule(model.betas, config_betas, report)

    model.eval().requires_grad_(False)
    model.to(device)
    if dtype != torch.float32:
        for child in model.children():  # buffers not in the checkpoint; the schedule buffers stay float32
            child.to(dtype)
    model.load_report = report
    if isinstance(model, LatentDiffusion):
        model.info.update(report.to_dict())
        if tokenizer is not None and cfg.cond_stage == "bert":
            model.set_tokenizer(str(tokenizer))
    return model


def check_pairing(config: str | Path, ckpt: str | Path, *, use_ema: bool | None = None) -> None:
    """Raise CheckpointError (one line: the architecture difference) if `ckpt` cannot load into `config`'s
    model by `load`'s strict rules. Only names and shapes are read: no weight is loaded (the noise schedule's
    values, which need the data, are checked by `load`)."""
    cfg = load_config(config)
    with torch.device("meta"):
        model = build_model(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = checkpoint_shapes(ckpt)
    diffusion = isinstance(cfg, DiffusionConfig)
    shared = diffusion and model.cond_stage_model is model.first_stage_model
    match_keys(expected, found, use_ema=diffusion and (cfg.use_ema if use_ema is None else use_ema),
               names=f"checkpoint {ckpt} and config {config}", shared_first_stage=shared,
               has_schedule=diffusion and "betas" in found)


def _check_schedule(ckpt_betas: torch.Tensor, betas: torch.Tensor, report: LoadReport) -> None:
    """The checkpoint's noise schedule must be the one the config describes."""
    ckpt_betas = ckpt_betas.float()
    if ckpt_betas.shape != betas.shape or not torch.allclose(ckpt_betas, betas, rtol=1e-5, atol=1e-8):
        raise CheckpointError(
            f"checkpoint {report.ckpt_path} and config {report.config_path} do not match: the checkpoint's "
            f"noise schedule (betas {ckpt_betas[0]:.6g}..{ckpt_betas[-1]:.6g}, {ckpt_betas.numel()} steps) differs "
            f"from the config's ({betas[0]:.6g}..{betas[-1]:.6g}, {betas.numel()} steps)"
        )
