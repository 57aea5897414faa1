"""Tests of `ldm.text_encoder`: checkpoint key layout, parity with a literal einsum transcription
of the x-transformers encoder, and invariances (determinism, batch independence, no padding mask).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from ldm.text_encoder import BERTEmbedder, TextEncoderConfig
from ldm.tokenizer import BertTokenizer

from .numerics import assert_close_ulps

REPO = Path(__file__).resolve().parents[1]
SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "spec"
MANIFEST = SPEC / "manifests" / "txt2img-1p4B-eval.json"
TINY_VOCAB = REPO / "configs" / "tiny" / "vocab.txt"
PREFIX = "cond_stage_model."


def tiny_model(seed: int = 0) -> BERTEmbedder:
    """Tiny encoder with every parameter random (LayerNorm affine too), so each one matters."""
    torch.manual_seed(seed)
    model = BERTEmbedder(TextEncoderConfig.tiny()).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.2 * torch.randn_like(module.weight))
                module.bias.copy_(0.2 * torch.randn_like(module.bias))
    return model


@pytest.fixture(scope="module")
def tiny_tokens() -> torch.Tensor:
    tok = BertTokenizer(TINY_VOCAB)
    return tok(["a photo of a red cat on the street.", "", "a dog, a man and a woman in the house at night"])


# ----------------------------------------------------------------------------
# Literal reference: einsum attention and explicit pre-norm residuals, read from the state_dict.


def reference_forward(
    sd: dict[str, torch.Tensor], tokens: torch.Tensor, cfg: TextEncoderConfig
) -> torch.Tensor:
    def layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * w + b  # torch LayerNorm default eps

    def gelu(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))  # exact GELU (erf)

    t = "transformer."
    n = tokens.shape[1]
    x = sd[t + "token_emb.weight"][tokens] + sd[t + "pos_emb.emb.weight"][:n][None]
    for k in range(2 * cfg.n_layer):
        p = f"{t}attn_layers.layers.{k}."
        h = layer_norm(x, sd[p + "0.weight"], sd[p + "0.bias"])
        if k % 2 == 0:  # attention block
            b = x.shape[0]
            q, kk, v = (
                (h @ sd[p + f"1.to_{name}.weight"].T).reshape(b, n, cfg.heads, cfg.dim_head)
                for name in ("q", "k", "v")
            )
            dots = torch.einsum("bihd,bjhd->bhij", q, kk) * cfg.dim_head**-0.5
            attn = dots.softmax(dim=-1)
            out = torch.einsum("bhij,bjhd->bihd", attn, v).reshape(b, n, cfg.heads * cfg.dim_head)
            out = out @ sd[p + "1.to_out.weight"].T + sd[p + "1.to_out.bias"]
        else:  # feed-forward block
            hidden = gelu(h @ sd[p + "1.net.0.0.weight"].T + sd[p + "1.net.0.0.bias"])
            out = hidden @ sd[p + "1.net.2.weight"].T + sd[p + "1.net.2.bias"]
        x = x + out
    return layer_norm(x, sd[t + "norm.weight"], sd[t + "norm.bias"])


def test_matches_literal_reference(tiny_tokens: torch.Tensor) -> None:
    model = tiny_model()
    with torch.no_grad():
        ours = model(tiny_tokens)
        ref = reference_forward(model.state_dict(), tiny_tokens, model.config)
    assert ours.shape == ref.shape == (3, 77, 32)
    # SDPA and nn.LayerNorm vs this einsum transcription: float32 rounding apart. Max seen 1.8e-6
    # (7.5 ULPs of max |out| ~ 2.7) over MKL_CBWR, ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY and 1-2 threads;
    # 1e-5 (~40 ULPs) keeps a margin and stays 10x below the tanh-GELU guard below.
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_reference_detects_tanh_gelu(tiny_tokens: torch.Tensor) -> None:
    """Guard for the parity test: the GELU variant changes the output by far more than 1e-5."""
    model = tiny_model()
    for module in model.modules():
        if isinstance(module, torch.nn.GELU):
            module.approximate = "tanh"
    with torch.no_grad():
        diff = (
            (model(tiny_tokens) - reference_forward(model.state_dict(), tiny_tokens, model.config))
            .abs()
            .max()
        )
    assert diff > 1e-4


# ----------------------------------------------------------------------------
# Checkpoint layout: the manifest's cond_stage_model.* entries, key for key.


def test_state_dict_matches_manifest() -> None:
    if not MANIFEST.is_file():
        pytest.skip(f"spec manifest not found at {MANIFEST} (needs the shared/ folder beside the repo)")
    manifest = json.loads(MANIFEST.read_text())
    expected = {
        name[len(PREFIX) :]: tuple(shape)
        for name, shape, _dtype in manifest["state_dict"]
        if name.startswith(PREFIX)
    }
    with torch.device("meta"):
        model = BERTEmbedder(TextEncoderConfig.txt2img_1p4b())
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert set(ours) == set(expected), (
        sorted(set(ours) - set(expected))[:5],
        sorted(set(expected) - set(ours))[:5],
    )
    assert ours == expected
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == manifest["params_by_top_level_attribute"]["cond_stage_model"]


def test_tiny_state_dict_round_trips_strictly() -> None:
    a, b = tiny_model(seed=0), tiny_model(seed=1)
    b.load_state_dict(a.state_dict(), strict=True)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


# ----------------------------------------------------------------------------
# Invariances.


def test_deterministic_and_batch_independent(tiny_tokens: torch.Tensor) -> None:
    model = tiny_model()
    with torch.no_grad():
        first, second = model(tiny_tokens), model(tiny_tokens)
        rows = torch.cat([model(tiny_tokens[i : i + 1]) for i in range(tiny_tokens.shape[0])])
    assert torch.equal(first, second)  # the same computation twice: bitwise
    # One prompt per call vs three: MKL/oneDNN pick GEMM kernels by row count and by CPU (another path on
    # AMD than on Intel AVX-512), so the rows agree to rounding only. Max seen: 0 on an Intel Xeon
    # (AVX-512), 6 float32 ULPs of max |out| ~ 2.7 (1.4e-6) under MKL_CBWR=AVX2/COMPATIBLE at 1 or 2
    # threads. Bound 16 ULPs (~3.8e-6): a row seeing other tokens moves by far more (padding alone: > 1e-4).
    assert_close_ulps(rows, first, 16)


def test_padding_positions_are_attended(tiny_tokens: torch.Tensor) -> None:
    model = tiny_model()
    tokens = tiny_tokens[:1].clone()
    n_real = int((tokens != 0).sum())
    changed = tokens.clone()
    changed[0, n_real:] = 113  # "cat" in every padded position
    with torch.no_grad():
        out, out_changed = model(tokens), model(changed)
    assert (out[0, 0] - out_changed[0, 0]).abs().max() > 1e-4  # [CLS] sees the padded positions


def test_to_logits_is_unused(tiny_tokens: torch.Tensor) -> None:
    model = tiny_model()
    with torch.no_grad():
        before = model(tiny_tokens)
        model.transformer.to_logits.weight.add_(1.0)
        assert torch.equal(model(tiny_tokens), before)


def test_shorter_sequences_use_first_positions(tiny_tokens: torch.Tensor) -> None:
    model = tiny_model()
    with torch.no_grad():
        out = model(tiny_tokens[:, :10])
        ref = reference_forward(model.state_dict(), tiny_tokens[:, :10], model.config)
    assert out.shape == (3, 10, 32)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------
# Config and argument checks.


def test_config_presets_and_validation() -> None:
    big = TextEncoderConfig.txt2img_1p4b()
    assert (big.n_embed, big.n_layer, big.vocab_size, big.max_seq_len, big.heads, big.dim_head) == (
        1280,
        32,
        30522,
        77,
        8,
        64,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        big.n_layer = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="`n_embed`"):
        TextEncoderConfig(n_embed=0, n_layer=2)


def test_forward_rejects_bad_tokens() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.zeros(1, 77))
    with pytest.raises(ValueError, match="max_seq_len=77"):
        model(torch.zeros(1, 78, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 128\)"):
        model(torch.full((1, 77), 128, dtype=torch.long))
