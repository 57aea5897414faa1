"""The real-size path on the CPU: random full-size checkpoints in the released layout, through the task commands.

For each released model (inpainting_big, bsr_sr, text2img-large), one at a time in a temporary folder:
1. build the model of the shipped config at full size with seeded random weights (scaled init, so
   activations stay finite), and save it the way the released file is saved: a PyTorch Lightning
   checkpoint (`epoch`, `global_step`, `pytorch-lightning_version`, `callbacks` keyed by the
   ModelCheckpoint class), `model_ema.*` copies where the config samples EMA, the first stage twice
   (`first_stage_model.*` and `cond_stage_model.*`, one storage) for inpainting, and AdamW
   `optimizer_states` + `lr_schedulers` for `inpainting_big/last.ckpt` (`--optimizer` to choose);
2. write a one-image dataset at paper resolution (the scikit-image astronaut): inpainting 512² with a
   central box hole, SR x4 from a 512² HR image (128² LR), text-to-image 256² with one caption;
3. run the task command (`ldm-lab inpainting|superres|text2img`, papermill + kernel, as a user runs it)
   for 1 image x 2 DDIM steps on the CPU, and read `run.json`: load seconds, sampling seconds and the
   peak RSS of the evaluating process (`timings.peak_rss_mib`);
4. delete the folder (the largest, inpainting_big with optimizer state, is ~6.5 GB on disk).

Prints a Markdown table (for the README) and writes JSON with `--json`.

Examples:
    .venv/bin/python benchmarks/full_size.py                       # all three, ~10 min on 2 cores
    .venv/bin/python benchmarks/full_size.py --models bsr_sr --legacy --json /tmp/full_size.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ldm  # noqa: E402
from ldm_lab.checkpoints import model_entry  # noqa: E402
from ldm_lab.demo_models import add_released_extras, demo_state_dict  # noqa: E402
from ldm_lab.lightning_layout import save_lightning_checkpoint  # noqa: E402

MODELS = ("inpainting_big", "bsr_sr", "text2img-large")
# Reference figures from the issue: same machine class, plain {"state_dict"} files, task commands.
REFERENCE = {"inpainting_big": (162, 4.5), "bsr_sr": (64, 4.2), "text2img-large": (48, 7.1)}
PROMPT = "a photograph of an astronaut in a white space suit"


def released_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights of the full-size model, with the extras the released file holds."""
    cfg = ldm.load_config(REPO / model_entry(name).config)
    with torch.device("meta"):  # shapes only: the values come from demo_state_dict's generator
        model = ldm.build_model(cfg)
    state = demo_state_dict(model, seed)
    assert not any(v.is_meta for v in state.values())
    add_released_extras(cfg, state, num_updates=123456)
    return state


def astronaut(size: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)


def write_dataset(task: str, root: Path) -> list[str]:
    """A one-image dataset at paper resolution; returns the command's dataset arguments."""
    if task == "inpainting":
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        astronaut(512).save(root / "images" / "astronaut.png")
        mask = np.zeros((512, 512), np.uint8)
        mask[160:352, 160:352] = 255
        Image.fromarray(mask).save(root / "masks" / "astronaut.png")
        return ["--data_dir", str(root)]
    if task == "superres":
        root.mkdir(parents=True)
        astronaut(512).save(root / "astronaut.png")  # an HR folder: LR = bicubic x1/4 by the reader
        return ["--dataset_path", str(root), "--scale", "4"]
    (root / "images").mkdir(parents=True)
    astronaut(256).save(root / "images" / "astronaut.png")
    (root / "captions.txt").write_text(f"image_name,caption\nastronaut.png,{PROMPT}\n")
    from ldm.tokenizer import resolve_vocab

    return ["--dataset_root", str(root), "--tokenizer", str(resolve_vocab(None))]


def model_args(task: str, config: Path, ckpt: Path) -> list[str]:
    return {"inpainting": ["--config", str(config), "--model", str(ckpt), "--steps", "2"],
            "superres": ["--config", str(config), "--checkpoint", str(ckpt), "--steps", "2"],
            "text2img": ["--config_path", str(config), "--model_path", str(ckpt), "--ddim_steps", "2"]}[task]


def run_one(name: str, workdir: Path, *, optimizer: bool, legacy: bool) -> dict:
    entry = model_entry(name)
    task = entry.task
    folder = Path(tempfile.mkdtemp(prefix=f"full-size-{name}-", dir=workdir))
    try:
        start = time.perf_counter()
        state = released_state_dict(name)
        weights = sum(v.numel() * v.element_size() for v in {id(v): v for v in state.values()}.values())
        ckpt = save_lightning_checkpoint(folder / Path(entry.path).name, state, legacy=legacy, optimizer=optimizer)
        del state
        build_seconds = time.perf_counter() - start
        args = write_dataset(task, folder / "data") + model_args(task, REPO / entry.config, ckpt)
        command = [str(Path(sys.executable).with_name("ldm-lab")), task, *args, "--output_dir", str(folder / "run"),
                   "--max_samples", "1", "--batch_size", "1", "--device", "cpu", "--write_workers", "0"]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: {' '.join(command)} failed:\n{proc.stderr[-3000:]}")
        run = json.loads((folder / "run" / "run.json").read_text())
        timings, report = run["timings"], run["model"]["load_report"]
        return {"model": name, "task": task, "checkpoint": Path(entry.path).name,
                "format": report["ckpt_format"], "file_gib": round(ckpt.stat().st_size / 2**30, 2),
                "weights_gib": round(weights / 2**30, 2), "build_and_save_seconds": round(build_seconds, 1),
                "command_seconds": round(wall, 1), "load_seconds": timings["load_seconds"],
                "sampling_seconds": timings["sampling_seconds"], "peak_rss_gib": round(timings["peak_rss_mib"] / 1024, 2),
                "ema": report["ema"], "other_entries": report["other_entries"]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--optimizer", nargs="*", default=["inpainting_big"], choices=MODELS,
                        help="models saved with AdamW optimizer_states (the released inpainting_big/last.ckpt has them)")
    parser.add_argument("--legacy", action="store_true", help="save in the pre-1.6 (non-zip) serialization format")
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="where the temporary folders go")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    print(f"# {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{'legacy' if args.legacy else 'zip'} checkpoints; 1 image x 2 DDIM steps, --device cpu", flush=True)
    rows = []
    for name in args.models:
        row = run_one(name, Path(args.workdir), optimizer=name in args.optimizer, legacy=args.legacy)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| model (task, size) | checkpoint (format, file) | load | sampling | peak RSS | reference (plain file) |")
    print("|---|---|---|---|---|---|")
    sizes = {"inpainting": "512²", "superres": "x4, 512² HR", "text2img": "256²"}
    for r in rows:
        ref_s, ref_gb = REFERENCE[r["model"]]
        print(f"| {r['model']} ({r['task']}, {sizes[r['task']]}) | {r['checkpoint']} ({r['format']}, "
              f"{r['file_gib']} GiB; weights {r['weights_gib']} GiB) | {r['load_seconds']:.1f} s | "
              f"{r['sampling_seconds']:.0f} s | {r['peak_rss_gib']:.1f} GiB | {ref_s} s, {ref_gb} GB |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
