"""The LatentDiffusion model (Rombach et al. 2022): schedule, denoiser, first stage and conditioning.

Attribute names mirror CompVis `ldm.models.diffusion.ddpm.LatentDiffusion` (`model.diffusion_model`,
`first_stage_model`, `cond_stage_model`, the schedule buffers), so that a checkpoint's `state_dict`
loads key for key. Only inference lives here; sampling is in `ldm.samplers`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ldm.autoencoder import Autoencoder, DiagonalGaussian
from ldm.config import DiffusionConfig
from ldm.schedule import make_beta_schedule_linear, schedule_buffers
from ldm.text_encoder import BERTEmbedder
from ldm.tokenizer import BertTokenizer, resolve_vocab
from ldm.unet import UNetModel


class DiffusionWrapper(nn.Module):
    """Holds the UNet as `diffusion_model` (the CompVis key prefix `model.diffusion_model.`)."""

    def __init__(self, unet: UNetModel):
        super().__init__()
        self.diffusion_model = unet


# ----------------------------------------------------------------------------
# Latent diffusion model: eps-prediction UNet on first-stage latents (Rombach et al. 2022, eq. 2).
class LatentDiffusion(nn.Module):
    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.config = cfg
        with torch.device("cpu"):  # real values even when the networks are built on the meta device
            betas = make_beta_schedule_linear(cfg.linear_start, cfg.linear_end, cfg.timesteps)
            for name, value in schedule_buffers(betas).items():
                self.register_buffer(name, value)
        self.model = DiffusionWrapper(UNetModel(cfg.unet))
        self.first_stage_model = Autoencoder(cfg.first_stage)
        if cfg.cond_stage == "first_stage":
            self.cond_stage_model = self.first_stage_model  # same module: its keys appear under both prefixes
        elif cfg.cond_stage == "bert":
            self.cond_stage_model = BERTEmbedder(cfg.text_encoder)
        elif cfg.cond_stage == "identity":
            self.cond_stage_model = None
        else:
            raise ValueError(f"unknown cond_stage {cfg.cond_stage!r}; choose from ['first_stage', 'identity', 'bert']")
        self.tokenizer: BertTokenizer | None = None
        self.info: dict[str, Any] = {}

    @property
    def unet(self) -> UNetModel:
        return self.model.diffusion_model

    @property
    def latent_channels(self) -> int:
        return self.config.unet.out_channels

    @property
    def downsample_factor(self) -> int:
        return self.config.first_stage.downsample_factor

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, *, concat: torch.Tensor | None = None,
                    context: torch.Tensor | None = None) -> torch.Tensor:
        """eps_theta(x_t, t, c): `concat` is stacked on the channels, `context` feeds cross-attention.

        Inputs are cast to the UNet's weight dtype and eps comes back in x's dtype, so the sampler
        state stays float32 when the network runs in half precision.
        """
        dtype = self.unet.out[-1].weight.dtype
        h = x.to(dtype)
        if self.config.conditioning_key == "concat":
            if concat is None:
                raise ValueError("this model is conditioned by concatenation: pass `concat`")
            h = torch.cat([h, concat.to(dtype)], dim=1)
        elif context is None:
            raise ValueError("this model is conditioned by cross-attention: pass `context`")
        return self.unet(h, t, context=None if context is None else context.to(dtype)).to(x.dtype)

    # -- first stage --------------------------------------------------------
    def encode_first_stage(self, x: torch.Tensor, *, generator: torch.Generator | None = None,
                           sample: bool = True) -> torch.Tensor:
        """Image in [-1, 1] -> scaled latent (VQ: pre-quantisation; KL: posterior sample or mode)."""
        out = self.first_stage_model.encode(x)
        if isinstance(out, DiagonalGaussian):
            out = out.sample(generator) if sample else out.mode()
        return self.config.scale_factor * out

    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> image in about [-1, 1] (a VQ latent is quantised first, as upstream)."""
        return self.first_stage_model.decode(z / self.config.scale_factor)

    # -- conditioning -------------------------------------------------------
    def set_tokenizer(self, vocab: str | None = None) -> BertTokenizer:
        """Resolve the WordPiece vocab (explicit path, models/, HF cache, installed package) once."""
        self.tokenizer = BertTokenizer(resolve_vocab(vocab), max_length=self.config.text_encoder.max_seq_len)
        self.info["tokenizer_vocab"] = str(self.tokenizer.vocab_file)
        self.info["tokenizer_vocab_sha256"] = self.tokenizer.vocab_sha256
        return self.tokenizer

    def get_learned_conditioning(self, cond: Any) -> torch.Tensor:
        """Text prompts -> BERT context; masked image -> VQ latent; LR image -> itself (Identity)."""
        stage = self.config.cond_stage
        if stage == "bert":
            if self.tokenizer is None:
                self.set_tokenizer()
            device = next(self.cond_stage_model.parameters()).device
            return self.cond_stage_model(self.tokenizer(cond).to(device))
        if stage == "first_stage":
            return self.cond_stage_model.encode(cond)
        return cond
