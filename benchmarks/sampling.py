"""Sampling speed on CPU: s/step of one UNet forward and of a 10-step DDIM, tiny and medium txt2img.

Compares our SDPA attention with a straightforward einsum attention (the upstream formulation) on
the same weights, by swapping `ldm.layers.attention`. Prints medians over repeats.

    .venv/bin/python benchmarks/sampling.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldm  # noqa: E402
from ldm.pipeline import sample_latents  # noqa: E402


def einsum_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ · d^-0.5) v with explicit einsum, as the CompVis code computes it."""
    weight = torch.einsum("bhid,bhjd->bhij", q, k) * q.shape[-1] ** -0.5
    return torch.einsum("bhij,bhjd->bhid", weight.softmax(dim=-1), v)


def medium_config() -> ldm.DiffusionConfig:
    tiny = ldm.DiffusionConfig.tiny("txt2img")
    unet = replace(tiny.unet, model_channels=128, channel_mult=(1, 2, 4), attention_resolutions=(2, 4),
                   num_res_blocks=2, num_heads=8, context_dim=512)
    text = replace(tiny.text_encoder, n_embed=512, n_layer=4)
    return replace(tiny, unet=unet, text_encoder=text)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(model: ldm.LatentDiffusion, size: int, repeats: int, batch: int) -> dict[str, dict[str, list[float]]]:
    """Time both attention variants in alternation (same weights, same inputs) to cancel machine drift."""
    ctx = torch.randn(batch, 77, model.config.text_encoder.n_embed)
    x = torch.randn(batch, 4, size, size)
    t = torch.full((batch,), 500, dtype=torch.long)
    forward = lambda: model.apply_model(x, t, context=ctx)
    ddim = lambda: sample_latents(model, seeds=list(range(batch)), shape=(4, size, size), cond={"context": ctx},
                                  steps=10)
    times: dict[str, dict[str, list[float]]] = {"sdpa": {"unet_forward_s": [], "ddim10_s_per_step": []},
                                                "einsum": {"unet_forward_s": [], "ddim10_s_per_step": []}}
    variants = {"sdpa": contextlib.nullcontext, "einsum": lambda: _patched(einsum_attention)}
    with torch.inference_mode():
        for ctx_manager in variants.values():  # warm-up
            with ctx_manager():
                forward()
        for _ in range(repeats):
            for name, ctx_manager in variants.items():
                with ctx_manager():
                    times[name]["unet_forward_s"].append(_timed(forward))
                    times[name]["ddim10_s_per_step"].append(_timed(ddim) / 10)
    return times


@contextlib.contextmanager
def _patched(fn):
    with mock.patch("ldm.attention.attention", fn), mock.patch("ldm.unet.attention", fn), \
            mock.patch("ldm.autoencoder.attention", fn):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = {"tiny txt2img (32 ch, 8x8 latent)": (ldm.DiffusionConfig.tiny("txt2img"), 8),
             "medium txt2img (128 ch, 32x32 latent)": (medium_config(), 32)}
    print(f"torch {torch.__version__}, CPU threads {args.threads}, batch {args.batch}, median of {args.repeats}")
    for name, (cfg, size) in cases.items():
        model = ldm.build_model(cfg).eval()
        times = bench(model, size, args.repeats, args.batch)
        print(f"{name}:")
        for key in times["sdpa"]:
            ours, ref = (statistics.median(times[v][key]) for v in ("sdpa", "einsum"))
            print(f"  {key:20s} sdpa {ours:.4f} s   einsum {ref:.4f} s   speed-up x{ref / ours:.2f}")


if __name__ == "__main__":
    main()
