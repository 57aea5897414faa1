"""Benchmark the metrics feature stage on CPU (issue 3 acceptance).

1. Reference features for N=200 images at 256x256: first run (extract + write cache) vs second run
   (cache hit: fingerprint + load). Target: the second run >= 10x faster.
2. Peak RSS of feature extraction for N=50, 100, 500 in fresh processes. Target: growth only by the
   feature matrix (N x 2048 float32). The peak is set by one batch of 299x299 Inception activations and
   the allocator reaches its steady state only after the first full batches, so the child also reports
   the peak after the first 4 batches: `peak - peak_warm` is the growth with N inside one process.

Uses the real Inception FID weights when `ldm-lab weights status` finds them, otherwise a random-init
stand-in loaded through the same `feature_extractor_weights_path` (timing is the same; values are not).

Examples:
    .venv/bin/python benchmarks/metrics.py
    .venv/bin/python benchmarks/metrics.py --n-cache 50 --n-rss 20 100 200
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldm_lab import weights
from ldm_lab.metrics import cache
from ldm_lab.metrics.fidelity_features import build_extractor, extract_features
from ldm_lab.metrics.image_io import iter_images_uint8, list_image_files
from ldm_lab.metrics.stand_ins import save_random_inception_weights


def write_images(folder: Path, n: int, size: int) -> list[Path]:
    """Smooth random RGB images as PNG (deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        f = rng.uniform(1, 6, size=(3, 2))
        img = np.stack([np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + i) for c in range(3)], axis=2)
        img = (img + 1) * 127.5 + rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png")
    return list_image_files(folder)


def inception_weights(tmp: Path) -> tuple[Path, str]:
    found = weights.find("inception-fid")
    if found is not None:
        return found, "real torch-fidelity Inception weights"
    return save_random_inception_weights(
        tmp / "random-inception.pth"
    ), "random-init stand-in (no real weights)"


def memory_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {"rss": int(fields["VmRSS"].split()[0]) / 1024, "peak": int(fields["VmHWM"].split()[0]) / 1024}


def rss_child(folder: str, weights_path: str, batch_size: int) -> None:
    """Fresh process: extract features of every image in `folder`; print memory as JSON.

    `peak_warm` is the peak after the first 4 batches (allocator warm), so `peak - peak_warm` is the growth
    with N inside one process, free of run-to-run allocator noise.
    """
    extractor = build_extractor("inception", weights_path)
    warm: dict[str, float] = {}

    def images():
        for i, image in enumerate(iter_images_uint8(list_image_files(folder))):
            if i == 4 * batch_size:
                warm.update(memory_mb())
            yield image

    feats = extract_features(images(), extractor, batch_size=batch_size)
    end = memory_mb()
    report = {"n": len(feats), "nbytes": feats.nbytes, "peak": end["peak"], "rss_end": end["rss"]}
    print(json.dumps({**report, "peak_warm": warm.get("peak")}))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-cache", type=int, default=200, help="images for the cache timing")
    parser.add_argument(
        "--n-rss", type=int, nargs="+", default=[50, 100, 500], help="N values for the peak-RSS runs"
    )
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rss-child", nargs=2, metavar=("FOLDER", "WEIGHTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child, args.batch_size)
        return 0

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights_path, which = inception_weights(tmp)
        print(f"extractor: torch-fidelity inception-v3-compat/2048, {which}")
        extractor = build_extractor("inception", weights_path)

        # 1. Reference stage: first run vs cached run.
        paths = write_images(tmp / "ref", args.n_cache, args.size)
        t0 = time.perf_counter()
        first, status1 = cache.reference_features(
            paths, extractor, cache_dir=tmp / "cache", batch_size=args.batch_size
        )
        t1 = time.perf_counter()
        second, status2 = cache.reference_features(
            paths, extractor, cache_dir=tmp / "cache", batch_size=args.batch_size
        )
        t2 = time.perf_counter()
        assert np.array_equal(first, second) and (status1, status2) == (cache.CACHE_MISS, cache.CACHE_HIT)
        print(
            f"reference stage, N={args.n_cache} at {args.size}x{args.size}: first run {t1 - t0:.2f} s "
            f"({(t1 - t0) / args.n_cache * 1000:.0f} ms/image, {status1}), second run {t2 - t1:.3f} s ({status2}); "
            f"speed-up {(t1 - t0) / (t2 - t1):.0f}x (target >= 10x)"
        )

        # 2. Peak RSS in fresh processes.
        child = [sys.executable, __file__, "--batch-size", str(args.batch_size), "--rss-child"]
        for n in args.n_rss:
            folder = tmp / f"rss{n}"
            write_images(folder, n, args.size)
            out = json.loads(
                subprocess.run(
                    [*child, str(folder), str(weights_path)], check=True, capture_output=True, text=True
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            warm = out["peak_warm"]
            growth = (
                f"; peak growth after the first {4 * args.batch_size} images: {out['peak'] - warm:+.1f} MB"
                if warm
                else ""
            )
            print(
                f"N={n}: peak RSS {out['peak']:.1f} MB, RSS at end {out['rss_end']:.1f} MB, feature matrix "
                f"{out['nbytes'] / 2**20:.2f} MB{growth}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
