"""Peak RSS of a text-to-image evaluation run vs N (issue 5 acceptance: N=200 within 1.2x of N=20).

Each N runs `ldm_lab.tasks.run_text2img` on the tiny demo model in a fresh process (so peaks do not
carry over) over a synthetic caption set of N images, and reports the process's peak resident set size
(`ru_maxrss`). The runner streams: images are written as they are made and reread for the metrics, so
only the feature matrices (N x 2048 floats) grow with N.

`--metrics offline` (default) measures what an offline machine runs: FID/KID/PR and CLIP are reported
unavailable (no weights). `--metrics standins` adds random-weight Inception and tiny-CLIP stand-ins loaded
through the real code paths, so feature extraction and CLIP scoring are included in the peak.

Examples:
    .venv/bin/python benchmarks/eval_memory.py
    .venv/bin/python benchmarks/eval_memory.py --n 20 200 --steps 5 --metrics standins
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = "a the red blue small large cat dog car house tree river city night photo of on in with".split()


def write_dataset(root: Path, n: int) -> Path:
    """n smooth random 96x72 images and one caption each (`images/` + `captions.txt`)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:72, 0:96] / 96
    lines = ["image_name,caption"]
    for i in range(n):
        f = rng.uniform(1, 5, size=(3, 2))
        img = np.stack([np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + i) for c in range(3)], axis=2)
        Image.fromarray(np.round((img + 1) * 127.5).astype(np.uint8)).save(root / "images" / f"{i:05d}.png")
        lines.append(f"{i:05d}.png,{' '.join(rng.choice(WORDS, 6))}")
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    return root


def child(args) -> None:
    """Run one evaluation and print the peak RSS (MiB) and timings as JSON."""
    import torch

    from ldm_lab.demo_models import ensure_random_models
    from ldm_lab.tasks import run_text2img

    torch.set_num_threads(args.threads)
    config, ckpt = ensure_random_models(args.models)["txt2img"]
    extra = {}
    if args.metrics == "standins":
        from ldm_lab.metrics.stand_ins import save_random_inception_weights, save_tiny_open_clip

        name, clip = save_tiny_open_clip(Path(args.work) / "clip")
        inception = save_random_inception_weights(Path(args.work) / "inception.pth")
        extra = {"clip_model": name, "clip_pretrained": "", "metric_weights": {"inception-fid": str(inception),
                                                                             "clip": str(clip)}}
    start = time.perf_counter()
    result = run_text2img(dataset_root=args.data, output_dir=args.out, config_path=config, model_path=ckpt,
                          ddim_steps=args.steps, batch_size=args.batch_size, device="cpu", progress=False, **extra)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"n": len(result.samples), "peak_rss_mib": round(peak_mib, 1),
                      "seconds": round(time.perf_counter() - start, 1),
                      "fid": result.metrics["model"]["fid"].get("value", "unavailable")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[20, 200], help="dataset sizes to compare")
    parser.add_argument("--steps", type=int, default=5, help="DDIM steps (tiny model; sampling cost only)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in each run")
    parser.add_argument("--metrics", choices=["offline", "standins"], default="offline")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("data", "out", "models", "work"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.n:
            data = write_dataset(tmp / f"data{n}", n)
            cmd = [sys.executable, __file__, "--child", "--data", str(data), "--out", str(tmp / f"out{n}"),
                   "--models", str(tmp / "models"), "--work", str(tmp), "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--metrics", args.metrics]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"run with N={n} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"N={rows[-1]['n']:>5}  peak RSS {rows[-1]['peak_rss_mib']:8.1f} MiB  "
                  f"({rows[-1]['seconds']} s, FID: {rows[-1]['fid']})", flush=True)
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    verdict = "OK" if ratio <= 1.2 else "ABOVE TARGET"
    print(f"peak RSS N={rows[-1]['n']} / N={rows[0]['n']}: {ratio:.3f} (target <= 1.2: {verdict})")


if __name__ == "__main__":
    main()
