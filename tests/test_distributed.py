"""Sharded runs under torchrun (2 CPU processes, gloo) on the tiny demo models: the same folder as one process.

Each torchrun command is the real entry point (`python -m torch.distributed.run --nproc_per_node=2 -m
ldm_lab TASK ...`): both ranks sample their shard, rank 0 executes the notebook, which measures. The
single-process reference calls the same runner in this process (what the notebook and the plain CLI
call); images must be byte-identical and metrics.json / per_sample*.csv equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldm_lab import distributed
from ldm_lab.notebooks import PROJECT_ROOT, run_task

DATA, MODELS, CONFIGS = PROJECT_ROOT / "data" / "demo", PROJECT_ROOT / "models" / "demo", PROJECT_ROOT / "configs" / "tiny"
COMPARED = ("metrics.json", "per_sample.csv", "per_sample_baseline.csv")

# Runner keyword arguments of each task; the CLI options are the same names.
TASKS = {
    "text2img": {"dataset_root": DATA / "text2img_dataset", "config_path": CONFIGS / "txt2img.yaml",
                 "model_path": MODELS / "txt2img.ckpt", "ddim_steps": 2, "scale": 3.0, "max_samples": 3},
    "superres": {"dataset_path": DATA / "super-resolution_dataset", "config": CONFIGS / "superres.yaml",
                 "checkpoint": MODELS / "superres.ckpt", "scale": 4, "steps": 2, "max_samples": 3},
    "inpainting": {"data_dir": DATA / "inpainting_dataset", "config": CONFIGS / "inpainting.yaml",
                   "model": MODELS / "inpainting.ckpt", "steps": 2, "resolution": "128", "max_samples": 4},
}
COMMON = {"seed": 7, "batch_size": 2}


@pytest.fixture(scope="module", autouse=True)
def demo_inputs():
    from ldm_lab.data.demo import prepare_demo
    from ldm_lab.demo_models import demo_models

    prepare_demo(DATA)
    demo_models(MODELS)  # the committed trained checkpoints, checked


def torchrun(task: str, output_dir, cwd, *, env: dict | None = None, **overrides) -> subprocess.CompletedProcess:
    options = {**TASKS[task], **COMMON, "output_dir": output_dir, **overrides}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ldm_lab",
            task, *[str(v) for name, value in options.items() for v in (f"--{name}", value)]]
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def reference(task: str, output_dir, **overrides):
    """The single-process run (the runner the notebook calls), in this process, with one CPU thread as each
    torchrun rank has (OMP_NUM_THREADS=1): CPU kernels pick their reduction order by thread count, so
    bytes are comparable only at equal threads (as on GPUs only on the same hardware and software)."""
    import torch

    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in TASKS[task].items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_task(task, output_dir=str(output_dir), progress=False, **kwargs, **COMMON, **overrides)
    finally:
        torch.set_num_threads(threads)


def pngs(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def assert_same_outputs(sharded, single) -> None:
    a, b = pngs(sharded), pngs(single)
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []  # byte-for-byte
    for name in COMPARED:
        assert (sharded / name).read_text() == (single / name).read_text(), name


@pytest.mark.slow
@pytest.mark.parametrize("task", ["text2img", "superres"])
def test_two_ranks_write_the_single_process_folder(task, tmp_path):
    proc = torchrun(task, tmp_path / "sharded", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("report: ") == 1  # only rank 0 reports
    reference(task, tmp_path / "single")
    assert_same_outputs(tmp_path / "sharded", tmp_path / "single")
    run = json.loads((tmp_path / "sharded" / "run.json").read_text())
    assert run["status"] == "complete" and run["distributed"]["world_size"] == 2
    [session] = run["distributed"]["sessions"]
    assert session["images_per_rank"] == [2, 1] and session["backend"] == "gloo"  # 3 images: 0, 2 | 1
    assert (tmp_path / "sharded" / "report.html").is_file()
    assert json.loads((tmp_path / "single" / "run.json").read_text())["distributed"]["world_size"] == 1


@pytest.mark.slow
def test_two_ranks_with_batched_network_calls(tmp_path):
    """--batching batched under torchrun: each rank batches its own shard; the images are the per-image
    ones up to float rounding (batch composition differs from a single process, as documented)."""
    proc = torchrun("text2img", tmp_path / "sharded", tmp_path, batching="batched", write_workers=0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "sharded" / "run.json").read_text())
    assert run["resume_key"]["batching"] == "batched" and run["distributed"]["world_size"] == 2
    reference("text2img", tmp_path / "single")
    a, b = pngs(tmp_path / "sharded"), pngs(tmp_path / "single")
    assert sorted(a) == sorted(b) and len(a) == 6  # 3 generated + 3 references
    for name in a:
        diff = np.abs(np.asarray(Image.open(tmp_path / "sharded" / name), np.int16)
                      - np.asarray(Image.open(tmp_path / "single" / name), np.int16))
        assert diff.max() <= 2, name


@pytest.mark.slow
def test_a_killed_rank_is_completed_by_the_rerun_and_a_changed_rerun_is_refused(tmp_path):
    out = tmp_path / "sharded"
    # inline PNG writes: the rank stops right after its first image (with writer threads, queued ones land too)
    failed = torchrun("inpainting", out, tmp_path, env={distributed.FAIL_ENV: "1:1"}, write_workers=0)
    assert failed.returncode != 0 and "rank 1 stops after 1 image(s)" in failed.stderr
    assert (out / "inpainted_00002.png").is_file()  # rank 1's first image (index 1) stays
    assert not (out / "metrics.json").exists()
    refused = torchrun("inpainting", out, tmp_path, seed=8)
    assert refused.returncode != 0 and "seed: run.json has 7, now 8" in refused.stderr
    rerun = torchrun("inpainting", out, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and 0 < run["distributed"]["sessions"][-1]["images"] < 4
    reference("inpainting", tmp_path / "single")
    assert_same_outputs(out, tmp_path / "single")


def test_shard_assignment_and_devices(monkeypatch):
    shards = [distributed.Shard(rank, 3) for rank in range(3)]
    assert [[i for i in range(7) if s.owns(i)] for s in shards] == [[0, 3, 6], [1, 4], [2, 5]]
    assert distributed.current() == distributed.Shard() and not distributed.current().sharded
    assert distributed.gather({"x": 1}) == [{"x": 1}]
    assert distributed.device_for("cpu", 1) == "cpu"
    with pytest.raises(ValueError, match="cuda:LOCAL_RANK"):
        distributed.device_for("cuda:3", 1)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_torchrun() and distributed.init("cpu") == distributed.Shard()


# ---------------------------------------------------------------------------------------------------------
# benchmarks/gpu_check.sh: the CPU dry run (the GPU numbers come from a CUDA machine).
GPU_CHECK = PROJECT_ROOT / "benchmarks" / "gpu_check.sh"


def _gpu_check(tmp_path, *args) -> dict:
    out = tmp_path / "check.json"
    proc = subprocess.run(["bash", str(GPU_CHECK), "--out", str(out), *args], capture_output=True, text=True,
                          timeout=400, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_gpu_check_dry_run_writes_the_json(tmp_path):
    report = _gpu_check(tmp_path, "--dry-run")
    assert report["dry_run"] and [c["case"] for c in report["cases"]] == [
        "tiny-inpainting", "tiny-superres", "tiny-txt2img", "medium-txt2img"]
    measured = ["fp32/per-image", "fp32/batched", "bf16/batched", "bf16/batched/channels_last"]
    for case in report["cases"]:
        variants = case["variants"]
        assert list(variants) == [*measured, "bf16/batched/compile"]
        assert variants["bf16/batched/compile"] == {"skipped": "dry run (CPU)"}
        for label in measured:
            assert variants[label]["s_per_step"] > 0 and variants[label]["images_per_s"] > 0
        deviation = case["deviation_vs_fp32/per-image"]
        assert list(deviation) == measured[1:]
        assert deviation["fp32/batched"]["image_max_abs"] == 0  # batch 1 in the dry run: the same computation
        assert 0 <= deviation["bf16/batched"]["image_max_abs"] <= 255
        assert deviation["bf16/batched"]["latent_rel_l2"] > 0  # bfloat16 weights do change the numbers
    medium = report["cases"][-1]
    assert medium["unet_params_M"] > 10 * report["cases"][2]["unet_params_M"]  # model_channels 128 vs tiny


def test_gpu_check_writes_into_the_device_tools_out_folder(tmp_path):
    """On a lent GPU machine the files that come back are those under $OUT: the default --out goes there."""
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    proc = subprocess.run(["bash", str(GPU_CHECK), "--dry-run", "--cases", "tiny-superres"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [c["case"] for c in json.loads((tmp_path / "gpu_check.json").read_text())["cases"]] == ["tiny-superres"]


@pytest.mark.gpu
def test_gpu_check_on_cuda(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    report = _gpu_check(tmp_path, "--cases", "tiny-txt2img", "--steps", "2", "--repeats", "1", "--batch", "2",
                        "--compile-cases", "tiny-txt2img")
    [case] = report["cases"]
    assert report["environment"]["gpu"] and len(case["variants"]) == 5
    assert all(v["peak_memory_MiB"] > 0 for v in case["variants"].values())


def test_run_json_records_sampling_sessions_single_process(tmp_path):
    """World size 1 outside torchrun; a resume that samples nothing adds no session; overwrite starts afresh."""
    out = tmp_path / "run"
    for overwrite in (False, False, True):  # new run, resume (nothing to sample), overwrite
        reference("superres", out, overwrite=overwrite)
        run = json.loads((out / "run.json").read_text())
        [session] = run["distributed"]["sessions"]
        assert run["distributed"]["world_size"] == 1 and session["images_per_rank"] == [3]
        assert session["backend"] is None and "world_size" not in run["resume_key"]
