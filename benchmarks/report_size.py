"""report.html size and Chromium load time for runs of 100 and 1,000 samples.

Makes an inpainting run of N images with the real CLI (tiny demo model, 1 DDIM step, metrics from the PNGs,
FID and LPIPS off), then opens its report.html from file:// in headless Chromium (Debian's, via Playwright)
and times the load until every sample row of the browser is on screen, and one re-sort by a metric column:

    .venv/bin/python benchmarks/report_size.py                  # N = 100 and 1000, 256x256 images
    .venv/bin/python benchmarks/report_size.py --samples 100 --resolution 512
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from throughput import datasets  # noqa: E402

from ldm_lab import cli  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def make_run(root: Path, n: int, resolution: int) -> tuple[Path, float]:
    data = datasets(root, "inpainting", n, resolution)["data_dir"]
    out = root / "run"
    argv = ["inpainting", "--data_dir", data, "--output_dir", str(out), "--max_samples", str(n), "--steps", "1",
            "--resolution", str(resolution), "--batch_size", "8", "--no-fid", "--no-lpips"]
    start = time.perf_counter()
    if cli.main(argv) != 0:
        raise SystemExit(f"the run of {n} samples failed")
    return out, time.perf_counter() - start


def load_times(report: Path, n: int, repeats: int) -> tuple[float, float]:
    """Best of `repeats`: seconds from navigation until n browser rows exist; seconds for one re-sort."""
    from playwright.sync_api import sync_playwright

    loads, sorts = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(report.as_uri())
            page.wait_for_function(f"document.querySelectorAll('#ldm-browser tr.row').length === {n}")
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            page.click("#ldm-browser th[data-col='psnr_hole']")
            page.wait_for_function("document.querySelector(\"#ldm-browser th[data-col='psnr_hole']\").textContent"
                                   ".includes('▲') || document.querySelector(\"#ldm-browser th[data-col='psnr_hole']\")"
                                   ".textContent.includes('▼')")
            sorts.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return min(loads), min(sorts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, Chromium {CHROMIUM}, images {args.resolution}x{args.resolution}")
    print("| samples | report.html | browser section | per sample | Chromium load (all rows) | re-sort | run (CLI) |")
    print("|---|---|---|---|---|---|---|")
    for n in args.samples:
        root = Path(tempfile.mkdtemp(prefix=f"ldm-lab-report-size-{n}-"))
        try:
            out, seconds = make_run(root, n, args.resolution)
            report = out / "report.html"
            text = report.read_text(encoding="utf-8")
            section = len(text[text.index('<section id="ldm-browser"'):text.index("</section>", text.index(
                '<section id="ldm-browser"'))].encode())
            size = report.stat().st_size
            load, resort = load_times(report, n, args.repeats)
            print(f"| {n} | {size / 2**20:.2f} MiB | {section / 2**20:.2f} MiB | {section / n / 1024:.1f} KiB | "
                  f"{load:.2f} s | {resort * 1000:.0f} ms | {seconds:.0f} s |", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
