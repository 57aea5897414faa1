"""Throughput options of the runners: network batching, PNG writer threads, channels_last, torch.compile.

"per-image" (default) makes one UNet call per image (2 rows with guidance); "batched" one per batch. Both
draw each image's noise from its own seed, so the images agree to float rounding; the option is part of
the resume key. Writer threads never change a byte.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import ldm
from ldm_lab.tasks import run_inpainting, run_superres, run_text2img
from tests.test_tasks_support import (  # noqa: F401 (offline_env is an autouse fixture)
    Interrupt,
    demo_data,
    demo_models,
    hr_folder,
    interrupt_after,
    offline_env,
    read_text,
    tree,
)

N = 3


def run(task: str, output_dir, **kw):
    config, ckpt = demo_models()["txt2img" if task == "text2img" else task]
    if task == "text2img":
        args = dict(dataset_root=demo_data()["text2img_dataset"], config_path=config, model_path=ckpt,
                    max_samples=N, ddim_steps=4)
        runner = run_text2img
    elif task == "superres":
        args = dict(dataset_path=hr_folder(), config=config, checkpoint=ckpt, steps=4)  # 3 images of one size
        runner = run_superres
    else:
        args = dict(data_dir=demo_data()["inpainting_dataset"], config=config, model=ckpt, max_samples=N, steps=4,
                    resolution="64")
        runner = run_inpainting
    return runner(**{**args, "output_dir": output_dir, "batch_size": N, "progress": False, "fid": False, **kw})


def unet_rows(monkeypatch) -> list[int]:
    """Batch sizes of every UNet call made from now on."""
    rows: list[int] = []
    apply_model = ldm.LatentDiffusion.apply_model

    def counting(self, x, t, **kw):
        rows.append(x.shape[0])
        return apply_model(self, x, t, **kw)

    monkeypatch.setattr(ldm.LatentDiffusion, "apply_model", counting)
    return rows


def pixels(folder, pattern: str) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p), dtype=np.int16) for p in sorted(folder.glob(pattern))}


RESULTS = {"text2img": "generated_*.png", "superres": "sr/*.png", "inpainting": "inpainted_*.png"}


@pytest.mark.parametrize("task", ["text2img", "superres", "inpainting"])
def test_batched_calls_the_unet_per_batch_and_gives_the_same_images(tmp_path, monkeypatch, task):
    rows = unet_rows(monkeypatch)
    exact = run(task, tmp_path / "per-image")
    per_image_rows, rows[:] = sorted(set(rows)), []
    batched = run(task, tmp_path / "batched", batching="batched")
    rows_per_image = 2 if task == "text2img" else 1  # guidance: [uncond, cond] of one image per call
    assert per_image_rows == [rows_per_image] and sorted(set(rows)) == [N * rows_per_image]
    assert exact.run["sampling"]["batching"] == "per-image" and batched.run["sampling"]["batching"] == "batched"
    assert batched.run["resume_key"]["batching"] == "batched"
    a, b = pixels(exact.output_dir, RESULTS[task]), pixels(batched.output_dir, RESULTS[task])
    assert len(a) == N and list(a) == list(b)
    for name in a:  # same seeds, same sample: at most float rounding apart
        diff = np.abs(a[name] - b[name])
        assert diff.max() <= 2 and diff.mean() < 0.05, (name, diff.max(), diff.mean())
        assert a[name].std() > 5  # real images, not a constant that would match trivially


def test_a_rerun_with_other_batching_is_refused(tmp_path):
    run("text2img", tmp_path / "t2i", max_samples=1, ddim_steps=2, clip=False)
    assert "batching" not in json.loads(read_text(tmp_path / "t2i" / "run.json"))["resume_key"]  # defaults: no key
    with pytest.raises(ValueError, match=r"batching: run.json has '<absent>', now 'batched'"):
        run("text2img", tmp_path / "t2i", max_samples=1, ddim_steps=2, clip=False, batching="batched")
    with pytest.raises(ValueError, match=r"channels_last: run.json has '<absent>', now True"):
        run("text2img", tmp_path / "t2i", max_samples=1, ddim_steps=2, clip=False, channels_last=True)


def test_writer_threads_do_not_change_a_byte(tmp_path):
    inline = run("inpainting", tmp_path / "inline", write_workers=0, lpips=False)
    threaded = run("inpainting", tmp_path / "threaded", write_workers=3, lpips=False)
    files = tree(inline.output_dir)
    assert len(files) == 4 * N + N  # reference, input, mask, result + the biharmonic baseline, per image
    assert files == tree(threaded.output_dir)
    assert threaded.run["parameters"]["write_workers"] == 3 and "write_workers" not in threaded.run["resume_key"]


def test_a_run_interrupted_with_writes_in_flight_keeps_whole_files_and_resumes(tmp_path, monkeypatch):
    reference = run("inpainting", tmp_path / "reference", lpips=False, write_workers=0)
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupt):
        run("inpainting", tmp_path / "resumed", lpips=False, write_workers=2)
    kept = tree(tmp_path / "resumed")
    assert len(kept) >= 5 and kept.items() <= tree(reference.output_dir).items()  # queued writes landed whole
    assert not [p for p in (tmp_path / "resumed").rglob("*") if p.is_file() and p.suffix not in (".png", ".json")]
    monkeypatch.setattr("ldm_lab.tasks.run_dir.after_image_hook", None)
    resumed = run("inpainting", tmp_path / "resumed", lpips=False, write_workers=2)
    assert resumed.run["timings"]["images_generated"] < N
    assert tree(resumed.output_dir) == tree(reference.output_dir)


def test_channels_last_gives_the_same_images(tmp_path):
    plain = run("superres", tmp_path / "plain", lpips=False)
    nhwc = run("superres", tmp_path / "nhwc", lpips=False, channels_last=True)
    assert nhwc.run["resume_key"]["channels_last"] is True
    a, b = pixels(plain.output_dir, "sr/*.png"), pixels(nhwc.output_dir, "sr/*.png")
    assert list(a) == list(b) and all(np.abs(a[k] - b[k]).max() <= 1 for k in a)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("batching", "fast", r"`batching` must be one of \['per-image', 'batched'\], got 'fast'"),
    ("write_workers", -1, r"`write_workers` must be an integer >= 0, got -1"),
    ("channels_last", "yes", r"`channels_last` must be True or False, got 'yes'"),
    ("compile_unet", 1, r"`compile_unet` must be True or False, got 1"),
])
def test_bad_speed_options_are_refused_before_anything_is_written(tmp_path, option, value, message):
    for task in ("text2img", "superres", "inpainting"):
        with pytest.raises(ValueError, match=message):
            run(task, tmp_path / task, **{option: value})
        assert not (tmp_path / task).exists()


@pytest.mark.slow
def test_compiled_unet_gives_the_same_images(tmp_path):
    """torch.compile (inductor, C++ on the CPU: about a minute for the tiny UNet) through the runner."""
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler (g++ or c++ on PATH)")
    eager = run("text2img", tmp_path / "eager", max_samples=1, ddim_steps=2, clip=False)
    compiled = run("text2img", tmp_path / "compiled", max_samples=1, ddim_steps=2, clip=False, compile_unet=True)
    assert compiled.run["resume_key"]["compile_unet"] is True
    assert json.loads(read_text(compiled.output_dir / "run.json"))["parameters"]["compile_unet"] is True
    a, b = pixels(eager.output_dir, "generated_*.png"), pixels(compiled.output_dir, "generated_*.png")
    assert list(a) == ["generated_00001.png"] == list(b)
    assert np.abs(a["generated_00001.png"] - b["generated_00001.png"]).max() <= 2


def test_throughput_benchmark_runs_the_variants_and_compares_files(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "throughput.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--task", "superres",
                           "--images", "2", "--steps", "2", "--batch", "2", "--resolution", "64", "--threads", "1",
                           "--variants", "per-image:0", "per-image:2", "batched:2:channels_last", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["variants"]}
    assert list(rows) == ["per-image:0", "per-image:2", "batched:2:channels_last"]
    assert rows["per-image:2"]["identical_to_first"] == "2/2"  # writer threads never change a byte
    assert rows["batched:2:channels_last"]["batching"] == "batched" and rows["batched:2:channels_last"]["channels_last"]
    assert all(r["images_per_s"] > 0 for r in rows.values())
