"""Peak RSS while `ldm.load` reads a Lightning checkpoint whose optimizer state is 2x the weights (issue 10).

The checkpoint is a full-size model of a released config (default `configs/ldm/bsr_sr.yaml`, EMA off so
that the state_dict is exactly the model's weights W) saved in the released PyTorch Lightning layout with
AdamW moments for every weight (`optimizer_states` = 2 W). Each case runs in a fresh process: after the
imports (and one model built on the meta device: torch's meta machinery imports ~190 MiB of modules once,
whatever the file) the peak is reset (`/proc/self/clear_refs`), then `ldm.load` runs and the rise of the peak
(VmHWM) over the RSS before loading is reported as a multiple of W. "touched" reads every weight once
after loading (a sum), as sampling would, so the mapped pages count in RSS.

Target: peak during load <= 1.3 W. Zip files are memory-mapped (torch.load, mmap=True); the legacy
(pre-1.6) format cannot be mapped, and `ldm.legacy_checkpoint` reads it while seeking past the optimizer
moments (torch.load would read them: 3 W). With `--dtypes bfloat16` the fp32 pages of a mapped file stay
resident (reclaimable page cache) beside the bf16 copies: about 1.5 W.

Examples:
    .venv/bin/python benchmarks/checkpoint_memory.py
    .venv/bin/python benchmarks/checkpoint_memory.py --config configs/ldm/inpainting_big.yaml --formats zip
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(config: str, ckpt: str, dtype: str, touch: bool) -> dict:
    """Runs in a fresh process: the rise of peak RSS during ldm.load (and an optional pass over the weights)."""
    import torch

    import ldm

    with torch.device("meta"):  # one-time imports (torch's meta-device machinery pulls in sympy, ~190 MiB)
        ldm.build_model(ldm.load_config(config))
    rss_before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    model = ldm.load(config, ckpt, use_ema=False, dtype=getattr(torch, dtype))
    seconds = time.perf_counter() - start
    peak_load = _status_kib("VmHWM")
    if touch:
        with torch.no_grad():
            total = sum(float(p.float().sum()) for p in model.parameters())
        assert total == total  # NaN check: the weights were read
    weights = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    return {"load_seconds": round(seconds, 2), "rss_before_mib": rss_before / 1024,
            "peak_rise_during_load_mib": (peak_load - rss_before) / 1024,
            "peak_rise_after_touch_mib": (_status_kib("VmHWM") - rss_before) / 1024 if touch else None,
            "loaded_weights_mib": weights / 2**20}


def build(config: Path, folder: Path, legacy: bool) -> tuple[Path, int, int]:
    """Save a random full-size model of `config` in the Lightning layout with AdamW moments for all weights."""
    import ldm
    from ldm_lab.lightning_layout import save_lightning_checkpoint

    model = ldm.build_model(ldm.load_config(config))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("cond_stage_model.")
             or getattr(model, "cond_stage_model", None) is not getattr(model, "first_stage_model", None)}
    del model
    weights = sum(v.numel() * v.element_size() for v in state.values())
    path = folder / f"{'legacy' if legacy else 'zip'}.ckpt"
    save_lightning_checkpoint(path, state, legacy=legacy, trained_prefix="")
    return path, weights, path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ldm/bsr_sr.yaml")
    parser.add_argument("--formats", nargs="+", default=["zip", "legacy"], choices=["zip", "legacy"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--child", nargs=4, metavar=("CONFIG", "CKPT", "DTYPE", "TOUCH"), help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.child:
        config, ckpt, dtype, touch = args.child
        print(json.dumps(child(config, ckpt, dtype, touch == "1")))
        return 0

    config = (REPO / args.config).resolve()
    rows = []
    print(f"# {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}; "
          f"config {args.config}")
    for fmt in args.formats:
        with tempfile.TemporaryDirectory(prefix="ckpt-memory-") as tmp:
            ckpt, weights, size = build(config, Path(tmp), legacy=fmt == "legacy")
            for dtype in args.dtypes:
                for touch in ("0", "1"):
                    out = subprocess.run([sys.executable, __file__, "--child", str(config), str(ckpt), dtype, touch],
                                         capture_output=True, text=True, check=True, cwd=REPO)
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    w = weights / 2**20
                    row = {"format": fmt, "dtype": dtype, "touch": touch == "1", "weights_mib": round(w, 1),
                           "file_mib": round(size / 2**20, 1), **result,
                           "peak_during_load_x_weights": round(result["peak_rise_during_load_mib"] / w, 3)}
                    if result["peak_rise_after_touch_mib"] is not None:
                        row["peak_after_touch_x_weights"] = round(result["peak_rise_after_touch_mib"] / w, 3)
                    rows.append(row)
                    print(f"{fmt:<7} {dtype:<9} touch={touch}  W={w:7.1f} MiB  file={size / 2**20:7.1f} MiB  "
                          f"load {result['load_seconds']:6.2f} s  peak rise during load "
                          f"{row['peak_during_load_x_weights']:.3f} W"
                          + (f", after reading every weight {row['peak_after_touch_x_weights']:.3f} W"
                             if touch == "1" else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    fp32 = [r for r in rows if r["dtype"] == "float32"]
    return 0 if all(r["peak_during_load_x_weights"] <= 1.3 for r in fp32) else 1


if __name__ == "__main__":
    raise SystemExit(main())
