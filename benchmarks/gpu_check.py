"""GPU performance check: images/s and s/step of the runners' sampling path in its variants, peak memory,
and how far each variant's outputs are from the exact fp32 per-image ones, for the three tiny configs and a
medium text-to-image model.

Each case builds the model from its config with seeded random weights (`ldm_lab.demo_models`), samples a
batch with DDIM exactly as the runners do (`ldm_lab.tasks.sampling`: per-image seeds, guidance for
text-to-image) and decodes it. Variants, as BATCHING/DTYPE[/OPTION]:
  fp32/per-image                the runners' default (one image per network call; files batch-independent)
  fp32/batched                  `--batching batched` (one network call per batch)
  bf16/batched                  + `--dtype bf16` (bfloat16 weights and autocast)
  bf16/batched/channels_last    + `--channels_last`
  bf16/batched/compile          + `--compile_unet` (only the --compile-cases; its first call, compilation
                                included, is `first_call_s`)
The deviation check compares decoded uint8 images (and latents) of every variant with fp32/per-image for the
same seeds. Results go to a JSON file, rewritten after every case (a run cut short keeps what it measured).

    benchmarks/gpu_check.sh                       # on a CUDA machine: ~3-4 minutes, writes gpu_check.json
    .venv/bin/python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json   # CPU, tiny sizes, 2 steps
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldm  # noqa: E402
from ldm_lab.demo_models import demo_state_dict  # noqa: E402
from ldm_lab.tasks.sampling import decode_images, sample_batch  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"
CASES = ("tiny-inpainting", "tiny-superres", "tiny-txt2img", "medium-txt2img")
GUIDANCE = 7.5  # text-to-image samples with classifier-free guidance (two UNet rows per image)
REFERENCE = "fp32/per-image"
VARIANTS = {  # label -> (weight dtype, per-image network calls, channels_last, compile)
    REFERENCE: (torch.float32, True, False, False),
    "fp32/batched": (torch.float32, False, False, False),
    "bf16/batched": (torch.bfloat16, False, False, False),
    "bf16/batched/channels_last": (torch.bfloat16, False, True, False),
    "bf16/batched/compile": (torch.bfloat16, False, False, True),
}


def medium_config() -> ldm.DiffusionConfig:
    """Text-to-image at model_channels 128 (as benchmarks/sampling.py), about 1/20 of the 1.45B UNet."""
    tiny = ldm.load_config(TINY / "txt2img.yaml")
    unet = replace(tiny.unet, model_channels=128, channel_mult=(1, 2, 4), attention_resolutions=(2, 4),
                   num_res_blocks=2, num_heads=8, context_dim=512)
    text = replace(tiny.text_encoder, n_embed=512, n_layer=4)
    return replace(tiny, unet=unet, text_encoder=text)


def case_config(name: str) -> ldm.DiffusionConfig:
    if name == "medium-txt2img":
        return medium_config()
    if name in CASES:
        return ldm.load_config(TINY / f"{name.removeprefix('tiny-')}.yaml")
    raise ValueError(f"unknown case {name!r}; choose from {list(CASES)}")


def build(cfg: ldm.DiffusionConfig, device: torch.device) -> ldm.LatentDiffusion:
    model = ldm.build_model(cfg)
    model.load_state_dict(demo_state_dict(model, 0), strict=False)
    return model.eval().to(device)


def to_dtype(model: ldm.LatentDiffusion, dtype: torch.dtype) -> ldm.LatentDiffusion:
    """Networks in `dtype`, schedule buffers float32 (as `ldm.load(..., dtype=)` does)."""
    for child in model.children():
        child.to(dtype)
    return model


def conditioning(cfg: ldm.DiffusionConfig, batch: int, latent: int, device: torch.device):
    """(cond, uncond) keyword arguments of `apply_model`, seeded random (the encoders are not timed here)."""
    gen = torch.Generator().manual_seed(1)
    if cfg.conditioning_key == "concat":
        channels = cfg.unet.in_channels - cfg.unet.out_channels
        return {"concat": torch.randn(batch, channels, latent, latent, generator=gen).to(device)}, None
    ctx = torch.randn(batch, 77, cfg.unet.context_dim, generator=gen).to(device)
    return {"context": ctx}, {"context": torch.zeros_like(ctx)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(model, dtype, per_image, *, cond, uncond, seeds, shape, steps, device):
    """Sample + decode one batch as the runners do; returns (latents float32, uint8 images, sampling s, decode s)."""
    _sync(device)
    start = time.perf_counter()
    z = sample_batch(model, seeds=seeds, shape=shape, cond=cond, uncond=uncond,
                     guidance_scale=GUIDANCE if uncond is not None else 1.0, sampler="ddim", steps=steps,
                     autocast=dtype, per_image=per_image)
    _sync(device)
    sampled = time.perf_counter()
    images = torch.from_numpy(np.stack(decode_images(model, z, autocast=dtype, per_image=per_image)))
    _sync(device)
    decoded = time.perf_counter()
    return z.float().cpu(), images, sampled - start, decoded - sampled


def deviation(ref, out) -> dict:
    """How far `out` (latents, uint8 images) is from the fp32 reference `ref`."""
    (z_ref, img_ref), (z, img) = ref, out
    diff = (img.int() - img_ref.int()).abs().float()
    mse = (diff ** 2).mean().item()
    return {"latent_rel_l2": finite(((z - z_ref).norm() / z_ref.norm()).item()),
            "image_max_abs": int(diff.max().item()), "image_mean_abs": round(diff.mean().item(), 4),
            "image_psnr_db": None if mse == 0 else round(10 * torch.log10(torch.tensor(255.0 ** 2 / mse)).item(), 2),
            "image_share_differing": round((diff > 0).float().mean().item(), 4)}


def finite(value: float) -> float | None:
    """JSON has no NaN: a non-finite deviation is reported as null (and means the variant diverged)."""
    return value if value == value and abs(value) != float("inf") else None


def check_case(name: str, *, device: torch.device, batch: int, steps: int, repeats: int, latent: int | None,
               compile_unet: bool, dry_run: bool) -> dict:
    cfg = case_config(name)
    size = latent or cfg.image_size
    shape, seeds = (cfg.unet.out_channels, size, size), list(range(batch))
    cond, uncond = conditioning(cfg, batch, size, device)
    base = build(cfg, device)
    out = {"case": name, "latent_shape": list(shape), "image_size": size * cfg.first_stage.downsample_factor,
           "batch": batch, "steps": steps, "guidance": uncond is not None,
           "unet_params_M": round(sum(p.numel() for p in base.unet.parameters()) / 1e6, 3), "variants": {},
           "deviation_vs_" + REFERENCE: {}}
    outputs = {}
    for label, (dtype, per_image, channels_last, compiled) in VARIANTS.items():
        if compiled and not compile_unet:
            out["variants"][label] = {"skipped": "dry run (CPU)" if dry_run else "not in --compile-cases"}
            continue
        model = base if dtype == torch.float32 and not channels_last else to_dtype(copy.deepcopy(base), dtype)
        ldm.optimize(model, channels_last=channels_last, compile_unet=compiled)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        kwargs = {"cond": cond, "uncond": uncond, "seeds": seeds, "shape": shape, "steps": steps, "device": device}
        first = time.perf_counter()
        z, images, _, _ = run_once(model, dtype, per_image, **kwargs)  # warm-up (and compilation)
        first = time.perf_counter() - first
        timings = [run_once(model, dtype, per_image, **kwargs)[2:] for _ in range(repeats)]
        sample_s = sorted(t[0] for t in timings)[len(timings) // 2]
        decode_s = sorted(t[1] for t in timings)[len(timings) // 2]
        outputs[label] = (z, images)
        out["variants"][label] = {
            "s_per_step": round(sample_s / steps, 6), "images_per_s": round(batch / (sample_s + decode_s), 3),
            "sampling_s": round(sample_s, 4), "decode_s": round(decode_s, 4), "first_call_s": round(first, 3),
            "peak_memory_MiB": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda" else None}
        if label != REFERENCE:
            out["deviation_vs_" + REFERENCE][label] = deviation(outputs[REFERENCE], outputs[label])
    return out


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "platform": platform.platform()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                   gpu_memory_GiB=round(props.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version(),
                   flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                   mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled())
    else:
        env.update(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check.json", help="JSON file written (after every case)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per variant (median)")
    parser.add_argument("--medium-latent", type=int, default=32, help="latent side of the medium model")
    parser.add_argument("--compile-cases", nargs="*", default=["medium-txt2img"], choices=CASES,
                        help="cases that also run the torch.compile variant (compiling takes ~1 min each)")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, batch 1, 2 steps, 1 repeat, 8x8 latents, no compile: checks the script itself")
    args = parser.parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
        batch, steps, repeats, compiled = 1, 2, 1, []
        torch.set_num_threads(1)  # a check of the script, not a CPU benchmark: no thread oversubscription
    else:
        if not torch.cuda.is_available():
            parser.error("CUDA is not available; use --dry-run to check the script on the CPU")
        device = torch.device("cuda")
        batch, steps, repeats, compiled = args.batch, args.steps, args.repeats, args.compile_cases
    torch.manual_seed(0)
    report = {"what": "ldm-lab GPU check (benchmarks/gpu_check.py)", "dry_run": args.dry_run,
              "environment": environment(device), "cases": []}
    out = Path(args.out)
    for name in args.cases:
        latent = 8 if args.dry_run else (args.medium_latent if name.startswith("medium") else None)
        start = time.perf_counter()
        result = check_case(name, device=device, batch=batch, steps=steps, repeats=repeats, latent=latent,
                            compile_unet=name in compiled, dry_run=args.dry_run)
        result["wall_s"] = round(time.perf_counter() - start, 2)
        report["cases"].append(result)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        for label, v in result["variants"].items():
            line = v.get("skipped") or (f"{v['s_per_step']:.5f} s/step  {v['images_per_s']:9.2f} img/s  "
                                        f"peak {v['peak_memory_MiB']} MiB  first call {v['first_call_s']} s")
            print(f"{name:16s} {label:27s} {line}", flush=True)
        for label, d in result["deviation_vs_" + REFERENCE].items():
            print(f"{name:16s} {label:27s} vs {REFERENCE}: max |d| {d['image_max_abs']}, "
                  f"mean |d| {d['image_mean_abs']}, "
                  f"PSNR {d['image_psnr_db']} dB, latent rel L2 {d['latent_rel_l2']}", flush=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
