"""Time of the full-decode dataset check that every run does before its first image, first and second time.

Builds an inpainting dataset of N small random images and masks (the older script's layout) in a temporary
folder with an empty hash cache, then times `InpaintingDataset(verify="full")` twice in one process and once
more with the in-memory caches cleared (a new process: only the JSON caches answer):

    .venv/bin/python benchmarks/dataset_check.py --samples 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ldm-lab-dataset-check-"))
    os.environ["LDM_LAB_CACHE"] = str(root / "cache")

    from ldm_lab.data import InpaintingDataset, decoded
    from ldm_lab.data import fingerprint as fp
    from tests.conftest_data import make_inpainting

    make_inpainting(root / "ds", stems=[f"s{i:05d}" for i in range(args.samples)], size=(args.size, args.size),
                    texts=False)
    for label in ("first check (nothing cached)", "second check (same process)", "new process (JSON caches)"):
        if label.startswith("new process"):
            fp._MEMORY.clear()
            fp._DISK.clear()
            decoded._STATE.update(loaded=False, ok=set(), dirty=False)
        start = time.perf_counter()
        InpaintingDataset(root / "ds", verify="full")
        print(f"{label}: {time.perf_counter() - start:.2f} s for {args.samples} samples", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
