"""CompVis BERT-style text encoder (`BERTEmbedder`) for latent diffusion text-to-image.

A pre-norm transformer encoder in the x-transformers layout that CompVis ships in
`ldm/modules/x_transformer.py` and wraps in `ldm/modules/encoders/modules.py::BERTEmbedder`.
Module and parameter names follow upstream so that the `cond_stage_model.*` entries of an
original checkpoint load key for key (strip the prefix first):

    transformer.token_emb.weight                        [vocab_size, n_embed]
    transformer.pos_emb.emb.weight                      [max_seq_len, n_embed]
    transformer.attn_layers.layers.{2i}.0.{weight,bias}      LayerNorm before attention
    transformer.attn_layers.layers.{2i}.1.to_{q,k,v}.weight  (no bias)
    transformer.attn_layers.layers.{2i}.1.to_out.{weight,bias}
    transformer.attn_layers.layers.{2i+1}.0.{weight,bias}    LayerNorm before feed-forward
    transformer.attn_layers.layers.{2i+1}.1.net.0.0.*       Linear(n_embed, ff_mult * n_embed)
    transformer.attn_layers.layers.{2i+1}.1.net.2.*         Linear(ff_mult * n_embed, n_embed)
    transformer.norm.{weight,bias}
    transformer.to_logits.{weight,bias}                 unused at inference, kept for loading

Upstream facts reproduced here: LayerNorm with torch's default eps (1e-5), exact (erf) GELU
(`nn.GELU()`), attention scale `dim_head ** -0.5`, no attention mask (padding is attended),
`x = token_emb(tokens) + pos_emb`, then `x = block(norm(x)) + x` per layer, then a final norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class TextEncoderConfig:
    """Hyper-parameters of the CompVis `BERTEmbedder` (cond_stage_config.params upstream)."""

    n_embed: int  # model width (`dim` of the x-transformers Encoder)
    n_layer: int  # number of attention + feed-forward pairs (`depth`)
    vocab_size: int = 30522  # bert-base-uncased WordPiece vocabulary
    max_seq_len: int = 77  # tokens per prompt, incl. [CLS] and [SEP]
    heads: int = 8  # attention heads (x-transformers default)
    dim_head: int = 64  # width of one head (x-transformers DEFAULT_DIM_HEAD)
    ff_mult: int = 4  # feed-forward hidden width = ff_mult * n_embed

    def __post_init__(self) -> None:
        for name in ("n_embed", "n_layer", "vocab_size", "max_seq_len", "heads", "dim_head", "ff_mult"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TextEncoderConfig.`{name}` must be a positive int, got {value!r}")

    @classmethod
    def txt2img_1p4b(cls) -> TextEncoderConfig:
        """Preset of `configs/latent-diffusion/txt2img-1p4B-eval.yaml` (n_embed 1280, n_layer 32)."""
        return cls(n_embed=1280, n_layer=32)

    @classmethod
    def tiny(cls) -> TextEncoderConfig:
        """Random-weight preset for tests; pairs with `configs/tiny/vocab.txt` (128 tokens)."""
        return cls(n_embed=32, n_layer=2, vocab_size=128, heads=2, dim_head=16)


# ----------------------------------------------------------------------------
# Learned absolute position embedding (Vaswani et al. 2017 / BERT; x-transformers naming).


class AbsolutePositionalEmbedding(nn.Module):
    """Learned position table `emb` [max_seq_len, dim]; returns rows 0..n-1 as [1, n, dim]."""

    def __init__(self, dim: int, max_seq_len: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(max_seq_len, dim)
        nn.init.normal_(self.emb.weight, std=0.02)  # as upstream init_()

    def forward(self, x: Tensor) -> Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        return self.emb(positions)[None, :, :]


# ----------------------------------------------------------------------------
# Multi-head self-attention (Vaswani et al. 2017, "Attention Is All You Need", eq. 1).


class Attention(nn.Module):
    """softmax(Q K^T * dim_head**-0.5) V per head, bias-free q/k/v, biased output projection."""

    def __init__(
        self,
        dim: int,  # model width
        heads: int,  # number of heads
        dim_head: int,  # width of one head
    ) -> None:
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        inner_dim = heads * dim_head
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_k = nn.Linear(dim, inner_dim, bias=False)
        self.to_v = nn.Linear(dim, inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        # [B, N, H*D] -> [B, H, N, D]
        q, k, v = (
            t.view(b, n, self.heads, -1).transpose(1, 2) for t in (self.to_q(x), self.to_k(x), self.to_v(x))
        )
        # No mask: every position (padding included) attends to every position, as upstream.
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


# ----------------------------------------------------------------------------
# Position-wise feed-forward network (Vaswani et al. 2017, eq. 2, with GELU).


class FeedForward(nn.Module):
    """Linear -> exact GELU -> Linear, keyed `net.0.0` / `net.2` like x-transformers."""

    def __init__(
        self,
        dim: int,  # model width
        mult: int,  # hidden width = mult * dim
    ) -> None:
        super().__init__()
        inner_dim = dim * mult
        self.net = nn.Sequential(
            nn.Sequential(nn.Linear(dim, inner_dim), nn.GELU()),  # net.0: project in; erf GELU
            nn.Identity(),  # net.1: upstream Dropout(0.0), no parameters
            nn.Linear(inner_dim, dim),  # net.2: project out
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# ----------------------------------------------------------------------------
# Pre-norm encoder stack (Xiong et al. 2020, "On Layer Normalization in the Transformer").


class Encoder(nn.Module):
    """Alternating ('a', 'f') * depth blocks, each `x = block(LayerNorm(x)) + x`."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.layer_types: tuple[str, ...] = ("a", "f") * config.n_layer
        self.layers = nn.ModuleList()
        for layer_type in self.layer_types:
            if layer_type == "a":
                block: nn.Module = Attention(config.n_embed, config.heads, config.dim_head)
            else:
                block = FeedForward(config.n_embed, config.ff_mult)
            # Upstream index 2 is a parameter-free `Residual`; the addition is done in forward.
            self.layers.append(nn.ModuleList([nn.LayerNorm(config.n_embed), block]))

    def forward(self, x: Tensor) -> Tensor:
        for norm, block in self.layers:
            x = block(norm(x)) + x
        return x


# ----------------------------------------------------------------------------
# Token + position embedding around the encoder (x-transformers `TransformerWrapper`).


class TransformerWrapper(nn.Module):
    """Embeds tokens, runs the encoder, applies the final LayerNorm (`return_embeddings=True`)."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.max_seq_len = config.max_seq_len
        self.token_emb = nn.Embedding(config.vocab_size, config.n_embed)
        nn.init.normal_(self.token_emb.weight, std=0.02)  # as upstream init_()
        self.pos_emb = AbsolutePositionalEmbedding(config.n_embed, config.max_seq_len)
        self.attn_layers = Encoder(config)
        self.norm = nn.LayerNorm(config.n_embed)
        # Language-model head: in every checkpoint, never used for conditioning.
        self.to_logits = nn.Linear(config.n_embed, config.vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.token_emb(tokens)
        x = x + self.pos_emb(x)
        x = self.attn_layers(x)
        return self.norm(x)


# ----------------------------------------------------------------------------
# CompVis `BERTEmbedder` (Rombach et al. 2022, "High-Resolution Image Synthesis with LDMs", sec. 3.3).


class BERTEmbedder(nn.Module):
    """Text conditioning encoder tau_theta of LDM txt2img: token ids [B, L] -> context [B, L, n_embed].

    Takes token ids (see `ldm.tokenizer.BertTokenizer`), as upstream with `use_tokenizer: False`.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = TransformerWrapper(config)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"`tokens` must be an integer tensor of shape [batch, seq_len], "
                f"got dtype {tokens.dtype} and shape {tuple(tokens.shape)}"
            )
        if tokens.shape[1] > self.config.max_seq_len:
            raise ValueError(
                f"`tokens` has {tokens.shape[1]} positions, more than max_seq_len={self.config.max_seq_len}"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
            raise ValueError(
                f"`tokens` ids must lie in [0, {self.config.vocab_size}), "
                f"got min {int(tokens.min())} and max {int(tokens.max())}"
            )
        return self.transformer(tokens)

    def encode(self, tokens: Tensor) -> Tensor:
        """Upstream `BERTEmbedder.encode`: the same as forward."""
        return self(tokens)
