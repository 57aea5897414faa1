"""Small building blocks shared by the autoencoders, the UNet and the transformer blocks.

Everything here follows the CompVis latent-diffusion reference math exactly (normalisation
epsilons, float32 GroupNorm in the UNet, sinusoidal embedding order), because checkpoints trained
with that code must give the same numbers here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------
# Group normalisation: GroupNorm(32) computed in float32 (Nichol & Dhariwal 2021, openaimodel).
class GroupNorm32(nn.GroupNorm):
    """GroupNorm that always normalises in float32 and casts back (as upstream `GroupNorm32`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Weights are upcast too, so half-precision weights work on every backend (no-op in float32).
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


def unet_norm(channels: int) -> GroupNorm32:
    """The UNet's normalisation layer: 32 groups, eps 1e-5, computed in float32."""
    return GroupNorm32(32, channels)


def vae_norm(channels: int) -> nn.GroupNorm:
    """The autoencoder's / SpatialTransformer's normalisation: 32 groups, eps 1e-6, affine."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


# ----------------------------------------------------------------------------
# Sinusoidal timestep embedding (Vaswani et al. 2017; cos half first, as in openaimodel).
def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Embed integer timesteps [N] as [N, dim] = cat(cos(t·f), sin(t·f)), f_i = max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


# ----------------------------------------------------------------------------
# Attention on [batch, heads, tokens, head_dim] tensors (Vaswani et al. 2017, scale 1/sqrt(d)).
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v through PyTorch's fused scaled_dot_product_attention."""
    return F.scaled_dot_product_attention(q, k, v)
