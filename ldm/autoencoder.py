"""First-stage autoencoders: KL-regularised (AutoencoderKL) and vector-quantised (VQModelInterface).

Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", §3 and App. G;
the VQ bottleneck is van den Oord et al. 2017 / Esser et al. 2021 (taming-transformers
`VectorQuantizer2`). Module and parameter names are the CompVis ones, so a checkpoint's
`first_stage_model.*` entries load key for key.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ldm.layers import attention, vae_norm

ATTN_TYPES = ("vanilla", "none")


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of a first-stage model (the CompVis `ddconfig` plus the bottleneck)."""

    kind: str                               # "kl" (AutoencoderKL) or "vq" (VQModel / VQModelInterface)
    embed_dim: int                          # latent channels
    z_channels: int                         # encoder output channels (before quant_conv)
    ch: int = 128                           # base width
    ch_mult: tuple[int, ...] = (1, 2, 4)    # width multiplier per resolution level
    num_res_blocks: int = 2                 # ResnetBlocks per level
    attn_resolutions: tuple[int, ...] = ()  # resolutions with self-attention inside the levels
    resolution: int = 256                   # nominal training resolution (decides attn levels)
    in_channels: int = 3
    out_ch: int = 3
    double_z: bool = False                  # encoder emits mean and log-variance (KL)
    attn_type: str = "vanilla"              # mid-block attention: "vanilla" or "none"
    dropout: float = 0.0
    n_embed: int | None = None              # VQ codebook size

    def __post_init__(self) -> None:
        if self.kind not in ("kl", "vq"):
            raise ValueError(f"autoencoder `kind` must be 'kl' or 'vq', got {self.kind!r}")
        if self.attn_type not in ATTN_TYPES:
            raise ValueError(f"unsupported `attn_type` {self.attn_type!r}; choose from {list(ATTN_TYPES)}")
        if self.kind == "vq" and not self.n_embed:
            raise ValueError("a VQ autoencoder needs `n_embed` (codebook size)")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def kl_f8(cls) -> AutoencoderConfig:
        return cls("kl", embed_dim=4, z_channels=4, ch_mult=(1, 2, 4, 4), double_z=True)

    @classmethod
    def vq_f4(cls) -> AutoencoderConfig:
        return cls("vq", embed_dim=3, z_channels=3, n_embed=8192)

    @classmethod
    def vq_f4_noattn(cls) -> AutoencoderConfig:
        return cls("vq", embed_dim=3, z_channels=3, n_embed=8192, attn_type="none")

    @classmethod
    def tiny(cls, kind: str = "vq", attn_type: str = "vanilla") -> AutoencoderConfig:
        if kind == "kl":
            return cls("kl", embed_dim=4, z_channels=4, ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1,
                       resolution=64, double_z=True, attn_type=attn_type)
        return cls("vq", embed_dim=3, z_channels=3, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1,
                   resolution=64, n_embed=64, attn_type=attn_type)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


# ----------------------------------------------------------------------------
# Residual block without time embedding (He et al. 2016; the autoencoder's `ResnetBlock`).
class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = vae_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = vae_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


# ----------------------------------------------------------------------------
# Single-head spatial self-attention with 1x1 convolutions (Ho et al. 2020 `AttnBlock`).
class AttnBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = vae_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        h_ = self.norm(x)
        q, k, v = (rearrange(proj(h_), "b c h w -> b 1 (h w) c") for proj in (self.q, self.k, self.v))
        out = rearrange(attention(q, k, v), "b 1 (h w) c -> b c h w", h=h, w=w)
        return x + self.proj_out(out)


def make_attn(channels: int, attn_type: str) -> nn.Module:
    if attn_type == "vanilla":
        return AttnBlock(channels)
    if attn_type == "none":
        return nn.Identity()
    raise ValueError(f"unsupported `attn_type` {attn_type!r}; choose from {list(ATTN_TYPES)}")


class Downsample(nn.Module):
    """Stride-2 3x3 convolution after asymmetric zero padding (0, 1, 0, 1), as upstream."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: `block`, `attn` and an optional `downsample`/`upsample` (CompVis names)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int, cfg: AutoencoderConfig):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, cfg.dropout)
        self.attn_1 = make_attn(channels, cfg.attn_type)
        self.block_2 = ResnetBlock(channels, channels, cfg.dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


def _run_level(level: _Level, h: torch.Tensor) -> torch.Tensor:
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[i](h)
    return h


# ----------------------------------------------------------------------------
# Encoder: image -> z (Esser et al. 2021 architecture, as in ldm.modules.diffusionmodules.model).
class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        in_mult = (1, *cfg.ch_mult)
        res = cfg.resolution
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            level, block_in = _Level(), cfg.ch * in_mult[i]
            for _ in range(cfg.num_res_blocks):
                level.block.append(ResnetBlock(block_in, cfg.ch * mult, cfg.dropout))
                block_in = cfg.ch * mult
                if res in cfg.attn_resolutions:
                    level.attn.append(make_attn(block_in, cfg.attn_type))
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = _Mid(block_in, cfg)
        self.norm_out = vae_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


# ----------------------------------------------------------------------------
# Decoder: z -> image (mirror of the encoder with num_res_blocks + 1 blocks per level).
class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        block_in = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // 2 ** (len(cfg.ch_mult) - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, cfg)
        levels: list[_Level] = []
        for i in reversed(range(len(cfg.ch_mult))):
            level = _Level()
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, cfg.ch * cfg.ch_mult[i], cfg.dropout))
                block_in = cfg.ch * cfg.ch_mult[i]
                if res in cfg.attn_resolutions:
                    level.attn.append(make_attn(block_in, cfg.attn_type))
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            levels.insert(0, level)  # self.up[0] is the full-resolution level, as upstream
        self.up = nn.ModuleList(levels)
        self.norm_out = vae_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


# ----------------------------------------------------------------------------
# Codebook lookup (van den Oord et al. 2017; taming `VectorQuantizer2`, nearest code in L2).
class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = rearrange(z, "b c h w -> b h w c").contiguous()
        flat = z.view(-1, z.shape[-1])
        codes = self.embedding.weight
        # ||z||² + ||e||² − 2 z·e, written as upstream so near-ties resolve the same way.
        dist = (
            torch.sum(flat**2, dim=1, keepdim=True)
            + torch.sum(codes**2, dim=1)
            - 2 * torch.einsum("bd,dn->bn", flat, rearrange(codes, "n d -> d n"))
        )
        z_q = self.embedding(torch.argmin(dist, dim=1)).view(z.shape)
        z_q = z + (z_q - z)  # straight-through form kept for bit-level parity with upstream
        return rearrange(z_q, "b h w c -> b c h w").contiguous()


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) of the KL autoencoder, logvar clamped to [-30, 20]."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=generator.device if generator else None)
        return self.mean + self.std * noise.to(self.mean.device, self.mean.dtype)


# ----------------------------------------------------------------------------
# The first-stage model (Rombach et al. 2022 §3): encoder, bottleneck, decoder.
class Autoencoder(nn.Module):
    """AutoencoderKL (`kind="kl"`) or VQModelInterface (`kind="vq"`) with CompVis parameter names."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.kind == "vq":
            self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
            self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        else:
            self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor | DiagonalGaussian:
        """Image in [-1, 1] -> VQ: pre-quantisation latent (`quant_conv` output); KL: the posterior."""
        moments = self.quant_conv(self.encoder(x))
        return moments if self.config.kind == "vq" else DiagonalGaussian(moments)

    def decode(self, z: torch.Tensor, *, force_not_quantize: bool = False) -> torch.Tensor:
        """Latent -> image in about [-1, 1]; a VQ latent is snapped to the codebook first."""
        if self.config.kind == "vq" and not force_not_quantize:
            z = self.quantize(z)
        return self.decoder(self.post_quant_conv(z))
