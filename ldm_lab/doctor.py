"""`ldm-lab doctor`: one screen that tells a newcomer what is installed, present and missing.

Each missing piece comes with the command that fixes it.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from ldm_lab import checkpoints, weights

REPO = Path(__file__).resolve().parents[1]
DATASETS = {  # layout -> (default folder, command that prepares it)
    "inpainting": ("data/inpainting_dataset", "ldm-lab prepare inpainting --source hf:Brvcket/sdxl-inpainting-lights"),
    "super-resolution": ("data/super-resolution_dataset", "ldm-lab prepare superres --source Urban100.zip"),
    "text-to-image": ("data/text2img_dataset", "ldm-lab prepare text2img --source flickr30k.zip"),
    "demo (all three)": ("data/demo", "ldm-lab prepare demo"),
}


def environment() -> list[tuple[str, str]]:
    import torch

    rows = [("python", sys.version.split()[0]), ("platform", platform.platform()), ("torch", torch.__version__)]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(("cuda", f"{torch.version.cuda}: {names}"))
    else:
        rows.append(("cuda", f"not available (CPU only, {torch.get_num_threads()} threads)"))
    return rows


def tokenizer_row() -> tuple[str, str]:
    from ldm.tokenizer import resolve_vocab

    try:
        return "found", str(resolve_vocab())
    except FileNotFoundError as err:
        return "missing", f"{err} (or: ldm-lab weights fetch bert-base-uncased-vocab)"


def report(models_dir: Path = REPO / "models", data_dir: Path = REPO) -> str:
    lines = ["ldm-lab doctor", ""]
    lines += [f"  {k:<10} {v}" for k, v in environment()]
    lines += ["", "CompVis checkpoints (models/):"]
    for r in checkpoints.status(models_dir):
        fix = f"   fix: ldm-lab models fetch {r['name']}" if r["state"] == "missing" else ""
        lines.append(f"  {r['name']:<16} {r['state']:<8} {r['path']}{fix}")
    lines += ["", "Metric weights:"]
    for r in weights.status():
        fix = f"   fix: ldm-lab weights fetch {r['name']}" if r["state"] == "missing" else ""
        lines.append(f"  {r['name']:<28} {r['state']:<17} {r['path']}{fix}")
    state, where = tokenizer_row()
    lines += ["", f"BERT vocab (text-to-image): {state}: {where}", "", "Datasets:"]
    for layout, (folder, command) in DATASETS.items():
        path = data_dir / folder
        present = path.is_dir() and any(path.iterdir())
        lines.append(f"  {layout:<18} {'present' if present else 'missing':<8} {path}"
                     + ("" if present else f"   fix: {command}"))
    return "\n".join(lines)


def register(subparsers) -> None:
    """Add `doctor`."""
    p = subparsers.add_parser("doctor", help="what is installed, present and missing (run this first)",
                              description=__doc__)
    p.set_defaults(func=lambda args: print(report()) or 0)
