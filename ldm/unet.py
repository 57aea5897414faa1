"""The LDM denoiser: ADM UNet with optional cross-attention (Dhariwal & Nichol 2021; Rombach et al. 2022).

Module names and nesting are those of CompVis `ldm.modules.diffusionmodules.openaimodel.UNetModel`
(`input_blocks.N.M`, `middle_block`, `output_blocks`, `time_embed`, `out`), so checkpoints load key
for key. Only 2-D UNets that predict eps are supported (all CompVis LDM checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ldm.attention import SpatialTransformer
from ldm.layers import attention, timestep_embedding, unet_norm


@dataclass(frozen=True)
class UNetConfig:
    """UNetModel hyper-parameters, named as in the CompVis `unet_config.params`."""

    in_channels: int                          # latent channels + concatenated conditioning channels
    out_channels: int                         # latent channels (eps prediction)
    model_channels: int                       # base width
    attention_resolutions: tuple[int, ...]    # downsampling rates (1, 2, 4, ...) with attention
    num_res_blocks: int = 2
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    num_heads: int = -1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    use_spatial_transformer: bool = False
    transformer_depth: int = 1
    context_dim: int | None = None
    legacy: bool = True
    conv_resample: bool = True
    dropout: float = 0.0
    image_size: int = 64                      # nominal latent size (informational; the UNet is convolutional)

    def __post_init__(self) -> None:
        if self.num_heads == -1 and self.num_head_channels == -1:
            raise ValueError("UNet config needs `num_heads` or `num_head_channels`")
        if self.use_spatial_transformer != (self.context_dim is not None):
            raise ValueError("`use_spatial_transformer` and `context_dim` must be given together")

    @classmethod
    def inpainting_big(cls) -> UNetConfig:
        return cls(7, 3, 256, (8, 4, 2), channel_mult=(1, 2, 3, 4), num_heads=8, resblock_updown=True)

    @classmethod
    def bsr_sr(cls) -> UNetConfig:
        return cls(6, 3, 160, (16, 8), channel_mult=(1, 2, 2, 4), num_head_channels=32)

    @classmethod
    def txt2img_1p4b(cls) -> UNetConfig:
        return cls(4, 4, 320, (4, 2, 1), channel_mult=(1, 2, 4, 4), num_heads=8, use_spatial_transformer=True,
                   context_dim=1280, legacy=False, image_size=32)

    @classmethod
    def tiny(cls, family: str) -> UNetConfig:
        # 64 channels at the output level, so the last GroupNorm(32) groups are channel pairs (see the spec), and
        # scale-shift norms: the demo models' output path needs both (scripts/train_demo_models.py).
        if family == "inpainting":
            return cls(7, 3, 64, (2,), num_res_blocks=1, channel_mult=(1, 1), num_heads=2, resblock_updown=True,
                       use_scale_shift_norm=True, image_size=16)
        if family == "superres":
            return cls(6, 3, 64, (2,), num_res_blocks=1, channel_mult=(1, 1), num_head_channels=16,
                       use_scale_shift_norm=True, image_size=16)
        if family == "txt2img":
            return cls(4, 4, 64, (1, 2), num_res_blocks=1, channel_mult=(1, 1), num_heads=2, use_scale_shift_norm=True,
                       use_spatial_transformer=True, context_dim=32, legacy=False, image_size=8)
        raise ValueError(f"unknown tiny UNet family {family!r}; choose from ['inpainting', 'superres', 'txt2img']")


# ----------------------------------------------------------------------------
# Resampling (Dhariwal & Nichol 2021): conv or average-pool down, nearest (+conv) up.
class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


# ----------------------------------------------------------------------------
# Residual block conditioned on the timestep embedding, optionally resampling (BigGAN-style up/down).
class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, *,
                 use_scale_shift_norm: bool = False, up: bool = False, down: bool = False, dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(unet_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            unet_norm(out_channels), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.h_upd(self.in_layers[:-1](x))
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


# ----------------------------------------------------------------------------
# Spatial self-attention with a 1-D qkv convolution (Ho et al. 2020; "legacy" or new head order).
class AttentionBlock(nn.Module):
    def __init__(self, channels: int, num_heads: int, num_head_channels: int, new_order: bool):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.new_order = new_order
        self.norm = unet_norm(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        length, heads = qkv.shape[-1], self.num_heads
        if self.new_order:  # [3, heads, ch] along channels
            qkv = qkv.reshape(b, 3, heads, c // heads, length).transpose(0, 1)
        else:               # legacy: [heads, 3, ch] along channels
            qkv = qkv.reshape(b, heads, 3, c // heads, length).permute(2, 0, 1, 3, 4)
        q, k, v = (t.transpose(-1, -2) for t in qkv)  # [b, heads, length, ch]
        h = attention(q, k, v).transpose(-1, -2).reshape(b, c, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class TimestepEmbedSequential(nn.Sequential):
    """Calls each child with what it needs: ResBlocks get the embedding, transformers the context."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


# ----------------------------------------------------------------------------
# The UNet (Dhariwal & Nichol 2021, App. A; cross-attention per Rombach et al. 2022 §3.3).
class UNetModel(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        mc, emb_dim = cfg.model_channels, cfg.model_channels * 4
        res_kw = {"use_scale_shift_norm": cfg.use_scale_shift_norm, "dropout": cfg.dropout}
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        # Encoder half.
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))])
        skip_chans, ch, ds = [mc], mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, **res_kw)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers.append(self._attention(ch, upsample=False))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                down = ResBlock(ch, emb_dim, ch, down=True, **res_kw) if cfg.resblock_updown \
                    else Downsample(ch, cfg.conv_resample)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        # Bottleneck.
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, **res_kw), self._attention(ch, upsample=False), ResBlock(ch, emb_dim, **res_kw)
        )

        # Decoder half.
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_chans.pop(), emb_dim, mc * mult, **res_kw)]
                ch = mc * mult
                if ds in cfg.attention_resolutions:
                    layers.append(self._attention(ch, upsample=True))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, emb_dim, ch, up=True, **res_kw) if cfg.resblock_updown
                                  else Upsample(ch, cfg.conv_resample))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(unet_norm(ch), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1))

    def _attention(self, ch: int, *, upsample: bool) -> nn.Module:
        """Head layout exactly as openaimodel (incl. its `legacy` quirk for the head width)."""
        cfg = self.config
        num_heads = cfg.num_heads
        if cfg.num_head_channels == -1:
            dim_head = ch // num_heads
        else:
            num_heads, dim_head = ch // cfg.num_head_channels, cfg.num_head_channels
        if cfg.legacy:
            dim_head = ch // num_heads if cfg.use_spatial_transformer else cfg.num_head_channels
        if cfg.use_spatial_transformer:
            return SpatialTransformer(ch, num_heads, dim_head, cfg.transformer_depth, cfg.context_dim)
        heads_up = cfg.num_heads_upsample if cfg.num_heads_upsample != -1 else cfg.num_heads
        return AttentionBlock(ch, heads_up if upsample else num_heads, dim_head, cfg.use_new_attention_order)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Predict eps for latents x [N, C, H, W] at integer timesteps [N] (context: [N, L, D] or None)."""
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(x.dtype))
        skips, h = [], x
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)
