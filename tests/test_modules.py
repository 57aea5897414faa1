"""Building blocks against literal transcriptions of the upstream math (einsum/bmm attention etc.)."""

from __future__ import annotations

import math

import pytest
import torch

import ldm
from ldm.attention import CrossAttention
from ldm.autoencoder import AttnBlock, DiagonalGaussian, VectorQuantizer
from ldm.layers import timestep_embedding
from ldm.unet import AttentionBlock, UNetModel


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.ndim == 1 and "norm" in str(p) else 0.0))
    return module


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0, 7, 981])
    emb = timestep_embedding(t, 6)
    freqs = [math.exp(-math.log(10000) * i / 3) for i in range(3)]
    ref = torch.tensor([[math.cos(tt * f) for f in freqs] + [math.sin(tt * f) for f in freqs] for tt in t.tolist()])
    torch.testing.assert_close(emb, ref, rtol=1e-5, atol=1e-5)


def test_vae_attention_equals_bmm_reference():
    block = _randomize(AttnBlock(32), 1)
    x = torch.randn(2, 32, 5, 6)
    h = block.norm(x)
    q, k, v = block.q(h), block.k(h), block.v(h)
    b, c, hh, ww = q.shape
    w_ = torch.bmm(q.reshape(b, c, -1).permute(0, 2, 1), k.reshape(b, c, -1)) * c ** -0.5
    w_ = torch.softmax(w_, dim=2)
    ref = x + block.proj_out(torch.bmm(v.reshape(b, c, -1), w_.permute(0, 2, 1)).reshape(b, c, hh, ww))
    torch.testing.assert_close(block(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("new_order", [False, True])
def test_unet_attention_block_equals_qkv_reference(new_order):
    block = _randomize(AttentionBlock(64, num_heads=4, num_head_channels=-1, new_order=new_order), 2)
    x = torch.randn(2, 64, 4, 3)
    b, c, length, heads = 2, 64, 12, 4
    qkv = block.qkv(block.norm(x.reshape(b, c, -1)))
    ch = c // heads
    scale = 1 / math.sqrt(math.sqrt(ch))
    if new_order:  # QKVAttention: split qkv first, then heads
        q, k, v = (t.reshape(b * heads, ch, length) for t in qkv.chunk(3, dim=1))
    else:          # QKVAttentionLegacy: split heads first, then qkv
        q, k, v = qkv.reshape(b * heads, ch * 3, length).split(ch, dim=1)
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, -1, length)
    ref = (x.reshape(b, c, -1) + block.proj_out(a)).reshape(x.shape)
    torch.testing.assert_close(block(x), ref, rtol=1e-4, atol=1e-5)


def test_cross_attention_equals_einsum_reference():
    attn = _randomize(CrossAttention(32, 24, heads=4, dim_head=8), 3)
    x, ctx = torch.randn(2, 10, 32), torch.randn(2, 7, 24)
    q, k, v = attn.to_q(x), attn.to_k(ctx), attn.to_v(ctx)
    split = lambda t: t.reshape(2, t.shape[1], 4, 8).permute(0, 2, 1, 3).reshape(8, t.shape[1], 8)
    sim = torch.einsum("bid,bjd->bij", split(q), split(k)) * 8 ** -0.5
    out = torch.einsum("bij,bjd->bid", sim.softmax(dim=-1), split(v))
    out = out.reshape(2, 4, 10, 8).permute(0, 2, 1, 3).reshape(2, 10, 32)
    torch.testing.assert_close(attn(x, ctx), attn.to_out(out), rtol=1e-4, atol=1e-5)


def test_vector_quantizer_picks_nearest_code():
    vq = _randomize(VectorQuantizer(16, 3), 4)
    z = torch.randn(2, 3, 4, 5)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = vq.embedding.weight[torch.cdist(flat, vq.embedding.weight).argmin(dim=1)]
    torch.testing.assert_close(vq(z), nearest.reshape(2, 4, 5, 3).permute(0, 3, 1, 2), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family,factor", [("inpainting", 4), ("superres", 4), ("txt2img", 8)])
def test_autoencoder_shapes(family, factor):
    ae = ldm.build_model(ldm.DiffusionConfig.tiny(family)).first_stage_model.eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    z = ae.encode(x)
    z = z.mode() if isinstance(z, DiagonalGaussian) else z
    assert z.shape == (1, ae.config.embed_dim, 32 // factor, 32 // factor)
    assert ae.decode(z).shape == x.shape


@pytest.mark.parametrize("family", ["inpainting", "superres", "txt2img"])
def test_unet_batch_independent_and_time_dependent(family):
    torch.manual_seed(0)
    cfg = ldm.DiffusionConfig.tiny(family).unet
    unet = _randomize(UNetModel(cfg), 5).eval()
    x = torch.randn(3, cfg.in_channels, 8, 8)
    ctx = torch.randn(3, 77, cfg.context_dim) if cfg.context_dim else None
    t = torch.tensor([1, 500, 981])
    full = unet(x, t, context=ctx)
    single = torch.cat([unet(x[i:i + 1], t[i:i + 1], context=None if ctx is None else ctx[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(full, single, rtol=1e-4, atol=1e-5)
    other_t = unet(x, torch.tensor([2, 501, 980]), context=ctx)
    assert (other_t - full).abs().max() > 1e-4  # the timestep embedding reaches the output
