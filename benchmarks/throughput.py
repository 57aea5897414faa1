"""End-to-end sampling throughput of a task runner: network batching x PNG writer threads (x speed options).

Runs the real runner (`ldm_lab.tasks`) on the tiny demo checkpoint of a task, metrics off, once per
variant into a fresh folder, and reports images/s of the sampling phase (run.json `timings`), plus how many
result files are byte-identical to the first variant's. Datasets are built in a temporary folder from the
bundled demo photos, so N is free:

    .venv/bin/python benchmarks/throughput.py --task inpainting --images 8 --resolution 256
    .venv/bin/python benchmarks/throughput.py --task text2img --images 16 --device cuda --dtype bf16 \\
        --variants per-image:0 per-image:2 batched:0 batched:2 batched:2:channels_last
    (variant = BATCHING:WRITE_WORKERS[:channels_last][:compile])
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldm_lab.data import prepare_demo  # noqa: E402
from ldm_lab.demo_models import ensure_random_models  # noqa: E402
from ldm_lab.tasks import TASKS  # noqa: E402

RESULTS = {"text2img": "generated_*.png", "superres": "sr/*.png", "inpainting": "inpainted_*.png"}


def datasets(root: Path, task: str, n: int, size: int) -> dict:
    """Runner arguments for n images of the task, cut from the demo photos."""
    demo = prepare_demo(root / "demo")
    photos = sorted((demo["inpainting_dataset"] / "images").glob("*.png"))
    masks = sorted((demo["inpainting_dataset"] / "masks").glob("*.png"))
    folder = root / task
    if task == "text2img":
        (folder / "images").mkdir(parents=True)
        lines = ["image_name,caption"]
        for k in range(n):
            shutil.copy(photos[k % len(photos)], folder / "images" / f"img_{k:05d}.png")
            lines.append(f'img_{k:05d}.png,"photo number {k} of a small demo set, {k % 7} things in view"')
        (folder / "captions.txt").write_text("\n".join(lines) + "\n")
        return {"dataset_root": str(folder), "clip": False}
    if task == "superres":
        folder.mkdir(parents=True)
        for k in range(n):  # HR images of one size: one batch group
            Image.open(photos[k % len(photos)]).convert("RGB").resize((size, size), Image.Resampling.BICUBIC) \
                .save(folder / f"img_{k:05d}.png")
        return {"dataset_path": str(folder), "lpips": False}
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for k in range(n):
        shutil.copy(photos[k % len(photos)], folder / "images" / f"img_{k:05d}.png")
        shutil.copy(masks[k % len(masks)], folder / "masks" / f"img_{k:05d}.png")
    return {"data_dir": str(folder), "resolution": str(size), "lpips": False}


def digests(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


def parse_variant(text: str) -> dict:
    parts = text.split(":")
    options = {"batching": parts[0], "write_workers": int(parts[1]) if len(parts) > 1 else 0,
               "channels_last": "channels_last" in parts[2:], "compile_unet": "compile" in parts[2:]}
    unknown = set(parts[2:]) - {"channels_last", "compile"}
    if unknown:
        raise SystemExit(f"unknown variant flag(s) {sorted(unknown)} in {text!r}")
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="inpainting")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=256,
                        help="inpainting working size / superres HR size (text2img: the model's size)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--variants", nargs="+", default=["per-image:0", "per-image:2", "batched:0", "batched:2"])
    parser.add_argument("--out", default="", help="JSON file for the results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="ldm-lab-throughput-"))
    try:
        models = ensure_random_models(root / "models")
        config, ckpt = models["txt2img" if args.task == "text2img" else args.task]
        data = datasets(root, args.task, args.images, args.resolution)
        names = {"text2img": ("config_path", "model_path", "ddim_steps"), "superres": ("config", "checkpoint", "steps"),
                 "inpainting": ("config", "model", "steps")}[args.task]
        common = {names[0]: str(config), names[1]: str(ckpt), names[2]: args.steps, "batch_size": args.batch,
                  "device": args.device, "dtype": args.dtype, "fid": False, "progress": False, **data}
        report = {"what": "benchmarks/throughput.py", "task": args.task, "images": args.images, "batch": args.batch,
                  "steps": args.steps, "device": args.device, "dtype": args.dtype, "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "platform": platform.platform(),
                  "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None, "variants": []}
        first = None
        for text in args.variants:
            options = parse_variant(text)
            out = root / "runs" / text.replace(":", "_")
            start = time.perf_counter()
            result = TASKS[args.task](output_dir=str(out), **common, **options)
            wall = time.perf_counter() - start
            seconds = result.run["timings"]["sampling_seconds"]
            files = digests(out, RESULTS[args.task])
            first = first or files
            same = sum(files[k] == first.get(k) for k in files)
            row = {"variant": text, **options, "sampling_s": seconds, "images_per_s": round(args.images / seconds, 3),
                   "wall_s": round(wall, 2), "identical_to_first": f"{same}/{len(files)}"}
            report["variants"].append(row)
            print(f"{args.task:10s} {text:28s} {row['images_per_s']:8.3f} img/s  sampling {seconds:7.2f} s  "
                  f"files identical to {args.variants[0]}: {row['identical_to_first']}", flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
