"""How much the trained demo models learned: issue 13's acceptance numbers on the held-out demo photos.

Runs the three task runners exactly as the demo notebooks do (DDIM, the notebooks' steps, resolution and
guidance), but on every sample of `data/demo/` (8 photos none of the inpainting / super-resolution models
saw; 16 captions for text-to-image), with the trained checkpoints of `models/demo/` and with the seeded
random tiny models the tests use, and prints:

  * inpainting: hole PSNR (RGB, hole pixels) of the model, of the random model, of the biharmonic baseline;
    the notebook's sampler (DDIM, eta 1) with its seed 0 and with seeds 1 and 2, and deterministic DDIM (eta 0);
  * super-resolution x4: PSNR-Y of the model, of the random model, of bicubic;
  * text-to-image: share of prompts whose generated image is closer to its caption's photo than to any
    other of the eight photos (pixel L2 at 64x64, and L1 between 8x8x8 colour histograms), per guidance scale.

    .venv/bin/python benchmarks/demo_models.py                 # about 16 s on 2 cores
    .venv/bin/python benchmarks/demo_models.py --models /tmp/train --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ldm_lab.data import prepare_demo  # noqa: E402
from ldm_lab.demo_models import demo_models, ensure_random_models  # noqa: E402
from ldm_lab.notebooks import notebook_defaults, run_task  # noqa: E402

SCALES = (1.0, 3.0, 7.5)


def _run(task: str, out: Path, **changes):
    """The notebook's defaults, every sample, metrics that need downloaded weights off."""
    params = {k: v for k, v in notebook_defaults(task).items() if k not in {"smoke", "run_id"}}
    params.update({k: False for k in ("fid", "lpips", "clip") if k in params})
    params.update(max_samples=0, output_dir=str(out), overwrite=True, **changes)
    return run_task(task, **params)


def _value(result, side: str, metric: str) -> float:
    return float(result.metrics[side][metric]["value"])


def colour_histogram(image: np.ndarray, bins: int = 8) -> np.ndarray:
    """Normalised joint RGB histogram (bins^3) of a uint8-range image."""
    index = np.clip(image // (256 // bins), 0, bins - 1).astype(int).reshape(-1, 3)
    counts = np.bincount((index[:, 0] * bins + index[:, 1]) * bins + index[:, 2], minlength=bins**3)
    return counts / counts.sum()


def caption_hits(result) -> dict[str, float]:
    """Share of samples whose image is nearest (pixel L2; colour-histogram L1) to its own caption's photo, among
    the run's reference images (each photo as the runner prepared it at the generation size)."""
    def read(name: str) -> np.ndarray:
        return np.asarray(Image.open(result.output_dir / name).convert("RGB"), dtype=np.float64)

    photo = {}  # dataset image -> its reference, once
    for record in result.samples:
        photo.setdefault(record.id.split("#")[0], read(record.files["reference"]))
    hits = {"pixel_l2": 0, "colour_histogram": 0}
    for record in result.samples:
        generated, own = read(record.files["result"]), record.id.split("#")[0]
        l2 = {name: np.mean((generated - ref) ** 2) for name, ref in photo.items()}
        hist = {name: np.abs(colour_histogram(generated) - colour_histogram(ref)).sum() for name, ref in photo.items()}
        hits["pixel_l2"] += min(l2, key=l2.get) == own
        hits["colour_histogram"] += min(hist, key=hist.get) == own
    return {k: v / len(result.samples) for k, v in hits.items()}


def evaluate(models: dict[str, tuple[Path, Path]], data: dict[str, Path], out: Path) -> dict:
    inpainting = {"data_dir": str(data["inpainting_dataset"]), "config": str(models["inpainting"][0]),
                  "model": str(models["inpainting"][1])}
    inp = _run("inpainting", out / "inpainting", **inpainting)
    others = {f"inpainting_psnr_hole_seed{seed}": _run("inpainting", out / f"inpainting_seed{seed}", seed=seed, **inpainting)
              for seed in (1, 2)}
    others["inpainting_psnr_hole_eta0"] = _run("inpainting", out / "inpainting_eta0", eta=0.0, **inpainting)
    sr = _run("superres", out / "superres", dataset_path=str(data["super-resolution_dataset"]),
              config=str(models["superres"][0]), checkpoint=str(models["superres"][1]))
    numbers = {"inpainting_psnr_hole": _value(inp, "model", "psnr_hole"),
               "biharmonic_psnr_hole": _value(inp, "baseline", "psnr_hole"),
               "superres_psnr_y": _value(sr, "model", "psnr_y"), "bicubic_psnr_y": _value(sr, "baseline", "psnr_y")}
    numbers.update({key: _value(result, "model", "psnr_hole") for key, result in others.items()})
    for scale in SCALES:
        t2i = _run("text2img", out / f"text2img_{scale:g}", dataset_root=str(data["text2img_dataset"]),
                   config_path=str(models["txt2img"][0]), model_path=str(models["txt2img"][1]), scale=scale,
                   caption_policy="all")
        for kind, share in caption_hits(t2i).items():
            numbers[f"text2img_scale{scale:g}_{kind}"] = share
    return numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(ROOT / "models" / "demo"), help="folder with the trained checkpoints")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = prepare_demo(tmp / "data")
        trained = evaluate(demo_models(args.models), data, tmp / "trained")
        random = evaluate(ensure_random_models(tmp / "random_models"), data, tmp / "random")
    rows = [("inpainting hole PSNR (dB)", "inpainting_psnr_hole", "biharmonic", "biharmonic_psnr_hole"),
            ("  the same, seed 1", "inpainting_psnr_hole_seed1", "biharmonic", "biharmonic_psnr_hole"),
            ("  the same, seed 2", "inpainting_psnr_hole_seed2", "biharmonic", "biharmonic_psnr_hole"),
            ("  deterministic DDIM (eta 0)", "inpainting_psnr_hole_eta0", "biharmonic", "biharmonic_psnr_hole"),
            ("super-resolution x4 PSNR-Y (dB)", "superres_psnr_y", "bicubic", "bicubic_psnr_y")]
    print(f"{'':48s} {'trained':>8s} {'random':>8s}  baseline")
    for label, key, base_name, base_key in rows:
        print(f"{label:48s} {trained[key]:8.2f} {random[key]:8.2f}  {trained[base_key]:.2f} ({base_name})")
    for scale in SCALES:
        for kind in ("pixel_l2", "colour_histogram"):
            key = f"text2img_scale{scale:g}_{kind}"
            label = f"text2img: own photo nearest ({kind}, scale {scale:g})"
            print(f"{label:48s} {trained[key]:8.0%} {random[key]:8.0%}")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"trained": trained, "random": random}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
