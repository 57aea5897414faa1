"""Resident memory after every feature batch, in one process: does extraction retain anything per image?

Feeds the same 32 random 256x256 images through the Inception FID extractor (random-init stand-in
weights, same code path as the real ones) `--batches` times and prints RSS (VmRSS) and peak (VmHWM)
after each batch. Flat RSS means nothing accumulates with N; the peak moves only with allocator noise.

    .venv/bin/python benchmarks/metrics_rss_trace.py --batches 12
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldm_lab.metrics.fidelity_features import build_extractor, extract_features  # noqa: E402
from ldm_lab.metrics.stand_ins import save_random_inception_weights  # noqa: E402


def memory_mb() -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extractor = build_extractor("inception", str(save_random_inception_weights(Path(tmp) / "inception.pth")))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(32)]
    print("images  rss_MB  peak_MB")
    for i in range(args.batches):
        extract_features(iter(images), extractor, batch_size=32)
        rss, peak = memory_mb()
        print(f"{(i + 1) * 32:6d}  {rss:6d}  {peak:7d}", flush=True)


if __name__ == "__main__":
    main()
