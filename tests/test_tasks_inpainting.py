"""Inpainting runner end to end on the demo model and data: outputs, resume, batch invariance, errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from ldm_lab.results import load_run
from ldm_lab.tasks import TASKS, run_inpainting
from tests.test_tasks_support import (  # noqa: F401 (offline_env is an autouse fixture)
    Interrupt,
    demo_data,
    demo_models,
    interrupt_after,
    offline,
    offline_env,
    read_text,
    standin_weights,
    tree,
)

N = 3
COLUMNS = ["id", "file", "psnr_rgb", "ssim_rgb", "psnr_hole", "ssim_hole_bbox", "lpips", "lpips_hole_bbox",
           "edge_consistency", "edge_consistency_outer_ring"]


def run(output_dir, **kw):
    config, ckpt = demo_models()["inpainting"]
    args = dict(data_dir=demo_data()["inpainting_dataset"], output_dir=output_dir, config=config, model=ckpt,
                max_samples=N, steps=4, resolution="64", batch_size=4, progress=False)
    return run_inpainting(**{**args, **kw})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted run at batch size 4."""
    with offline():
        return run(tmp_path_factory.mktemp("inpainting") / "ref")


def test_outputs_names_and_schemas(reference_run):
    out = reference_run.output_dir
    assert TASKS["inpainting"] is run_inpainting
    for i in range(1, N + 1):
        for name in (f"inpainted_{i:05d}.png", f"inputs/original_{i:05d}.png", f"inputs/mask_{i:05d}.png",
                     f"inputs/masked_{i:05d}.png", f"baseline/biharmonic_{i:05d}.png"):
            assert (out / name).is_file(), name
    assert Image.open(out / "inpainted_00001.png").size == (64, 64)
    run_json = json.loads(read_text(out / "run.json"))
    assert run_json["status"] == "complete" and run_json["task"] == "inpainting"
    assert [s["seed"] for s in run_json["samples"]] == [0, 1, 2]  # seed base + index
    assert run_json["samples"][0]["files"]["result"] == "inpainted_00001.png"
    key = run_json["resume_key"]
    assert {"config_sha256", "checkpoint_sha256", "sampler", "steps", "eta", "seed", "resolution",
            "dataset_selection", "device_type", "dtype"} <= set(key) and key["resolution"] == 64
    assert "dataset_fingerprint" not in key and run_json["dataset"]["fingerprint"]  # recorded, checked per image
    assert all(len(s["inputs_sha256"]) == 64 for s in run_json["samples"])
    assert "sampling_seconds" in run_json["timings"] and run_json["model"]["load_report"]["ema"].startswith("used")
    assert run_json["timings"]["load_seconds"] > 0 and run_json["timings"]["peak_rss_mib"] > 100
    metrics = json.loads(read_text(out / "metrics.json"))
    assert set(metrics) == {"task", "method", "model", "baseline"} and metrics["task"] == "inpainting"
    for system in ("model", "baseline"):
        assert metrics[system]["psnr_hole"]["n"] == N and len(metrics[system]["psnr_hole"]["ci95"]) == 2
        assert "hole" in metrics[system]["psnr_hole"]["protocol"]
    assert "seconds" not in read_text(out / "metrics.json")  # timings live in run.json only
    with open(out / "per_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS and [r["file"] for r in rows] == [f"inpainted_{i:05d}.png" for i in (1, 2, 3)]
    assert [r["id"] for r in rows] == ["00000", "00001", "00002"]
    with open(out / "per_sample_baseline.csv", newline="") as f:
        assert next(csv.DictReader(f))["file"] == "baseline/biharmonic_00001.png"
    legacy = json.loads(read_text(out / "evaluation_results.json"))
    assert legacy["final_metrics"]["total_samples"] == N and len(legacy["individual_results"]) == N


def test_composite_keeps_the_original_outside_the_hole(reference_run):
    out = reference_run.output_dir
    result, original = (np.asarray(Image.open(out / f)) for f in ("inpainted_00002.png", "inputs/original_00002.png"))
    hole = np.asarray(Image.open(out / "inputs/mask_00002.png")) > 127
    assert hole.any() and (~hole).any()
    np.testing.assert_array_equal(result[~hole], original[~hole])
    assert np.abs(result[hole].astype(int) - original[hole]).mean() > 1  # the model filled the hole
    baseline = np.asarray(Image.open(out / "baseline/biharmonic_00002.png"))
    np.testing.assert_array_equal(baseline[~hole], original[~hole])


def test_unavailable_metrics_carry_reasons_and_hint(reference_run):
    metrics = reference_run.metrics
    for name in ("fid", "kid", "lpips", "lpips_hole_bbox"):
        entry = metrics["model"][name]
        assert "value" not in entry and "ldm-lab weights" in entry["unavailable"], name
    assert "alexnet" in metrics["model"]["lpips"]["unavailable"]
    assert all(r["lpips"] is None for r in (s.metrics for s in reference_run.samples))
    rows = {(r["system"], r["metric"]): r for r in reference_run.metric_table()}
    assert rows[("model", "fid")]["status"] == "unavailable" and rows[("baseline", "psnr_rgb")]["status"] == "ok"
    assert rows[("model", "ssim_rgb")]["rating"] in {"excellent", "good", "fair", "poor"}
    html = reference_run._repr_html_()
    assert "unavailable" in html and "ldm-lab weights" in html


def test_load_run_rebuilds_the_result(reference_run):
    loaded = load_run(reference_run.output_dir)
    assert loaded.task == "inpainting" and loaded.metrics == reference_run.metrics
    assert [s.to_dict() for s in loaded.samples] == [s.to_dict() for s in reference_run.samples]
    assert loaded.samples[1].metrics["psnr_hole"] == pytest.approx(reference_run.samples[1].metrics["psnr_hole"])
    assert loaded.baseline_samples[0].files["result"] == "baseline/biharmonic_00001.png"


def test_batch_size_one_gives_identical_files(reference_run, tmp_path):
    single = run(tmp_path / "b1", batch_size=1)
    assert tree(single.output_dir) == tree(reference_run.output_dir)
    for name in ("metrics.json", "per_sample.csv", "per_sample_baseline.csv"):
        assert read_text(single.output_dir / name) == read_text(reference_run.output_dir / name), name


def test_interrupted_run_resumes_to_identical_files(reference_run, tmp_path, monkeypatch):
    out = tmp_path / "resume"
    written = interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        run(out, batch_size=4, write_workers=0)  # interrupted in the first batch (inline writes: exactly there)
    assert written == [0, 1] and (out / "inpainted_00002.png").is_file() and not (out / "inpainted_00003.png").exists()
    assert json.loads(read_text(out / "run.json"))["status"] == "running"
    monkeypatch.setattr("ldm_lab.tasks.run_dir.after_image_hook", None)
    resumed = run(out, batch_size=2)
    assert resumed.run["timings"]["images_resumed"] == 2 and resumed.run["timings"]["images_generated"] == 1
    assert tree(out) == tree(reference_run.output_dir)
    for name in ("metrics.json", "per_sample.csv", "per_sample_baseline.csv"):
        assert read_text(out / name) == read_text(reference_run.output_dir / name), name
    again = run(out)  # a finished run: nothing to sample, same measurements
    assert again.run["timings"]["images_generated"] == 0
    assert read_text(out / "metrics.json") == read_text(reference_run.output_dir / "metrics.json")


def test_changed_parameter_is_refused_unless_overwrite(reference_run, tmp_path):
    out = tmp_path / "changed"
    run(out, max_samples=2)
    with pytest.raises(ValueError, match=r"steps: run.json has 4, now 5") as err:
        run(out, max_samples=2, steps=5, seed=3)
    assert "seed: run.json has 0, now 3" in str(err.value) and "overwrite" in str(err.value)
    before = tree(out)
    run(out, max_samples=2, batch_size=1)  # batch size is not output-affecting
    assert tree(out) == before
    result = run(out, max_samples=2, steps=5, overwrite=True)
    assert result.run["resume_key"]["steps"] == 5 and tree(out) != before


def test_outputs_without_manifest_are_not_overwritten(tmp_path):
    (tmp_path / "inpainted_00001.png").write_bytes(b"old")
    with pytest.raises(ValueError, match="no run.json"):
        run(tmp_path)
    assert (tmp_path / "inpainted_00001.png").read_bytes() == b"old"


def test_bad_inputs_name_the_argument(tmp_path):
    config, ckpt = demo_models()["inpainting"]
    with pytest.raises(FileNotFoundError, match=r"`data_dir` .*nowhere"):
        run(tmp_path / "a", data_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="`model` not found"):
        run(tmp_path / "b", model=tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match=r"`model` does not fit `config`.*superres\.ckpt.*"
                                         r"do not match: UNet input channels: config 7, checkpoint 6 \("):
        run(tmp_path / "c", model=demo_models()["superres"][1])
    with pytest.raises(ValueError, match=r"`config` .*txt2img\.yaml describes a model with cond_stage 'bert'"):
        run(tmp_path / "d", config=demo_models()["txt2img"][0])
    with pytest.raises(ValueError, match="`resolution` must be 'native' or a positive multiple of 8"):
        run(tmp_path / "e", resolution="60")
    with pytest.raises(ValueError, match="`steps`.*choose another"):
        run(tmp_path / "f", steps=3)
    with pytest.raises(ValueError, match="`eta` must be 0 for sampler 'plms'"):
        run(tmp_path / "g", sampler="plms", eta=0.5)
    with pytest.raises(ValueError, match="`device`"):
        run(tmp_path / "h", device="tpu")
    assert not any((tmp_path / d).exists() for d in "abcdefgh")  # nothing written before the checks


def test_native_resolution_checks_sizes_then_runs(tmp_path):
    from ldm_lab.data.inpainting_writer import write_sample
    from ldm_lab.data.masks import generate_mask

    source = Image.open(demo_data()["inpainting_dataset"] / "images" / "00000.png")
    for name, size in (("odd", (60, 44)), ("even", (72, 48))):
        image = source.resize(size)
        write_sample(tmp_path / name, "00000", image, generate_mask(image.size, seed=0, index=0))
    with pytest.raises(ValueError, match=r"native.*multiples of 8.*00000\.png \(60x44\)"):
        run(tmp_path / "out", data_dir=tmp_path / "odd", resolution="native")
    result = run(tmp_path / "out", data_dir=tmp_path / "even", resolution="native")
    assert Image.open(result.output_dir / "inpainted_00001.png").size == (72, 48)
    assert result.run["resume_key"]["resolution"] == "native"


def test_standin_metric_networks_give_numbers(tmp_path, monkeypatch):
    from ldm_lab.tasks import measure

    # The real FID on 2048-d features costs a 2048x2048 sqrtm (~30 s on one core); the wiring is what is
    # tested here, so the statistic sees the first 16 feature dimensions (the FID code itself is unchanged).
    real_fid = measure.fid_result
    monkeypatch.setattr(measure, "fid_result", lambda a, b, **kw: real_fid(a[:, :16], b[:, :16], **kw))
    result = run(tmp_path / "m", max_samples=2, metric_weights=standin_weights())
    for system in ("model", "baseline"):
        metrics = result.metrics[system]
        assert isinstance(metrics["fid"]["value"], float) and "inception" in metrics["fid"]["protocol"]
        assert isinstance(metrics["kid"]["value"], float) and metrics["kid"]["n"] == 2
        assert isinstance(metrics["lpips"]["value"], float) and metrics["lpips"]["n"] == 2
    assert "composites" in result.metrics["model"]["fid"]["protocol"]
    assert "biharmonic" in result.metrics["baseline"]["fid"]["protocol"]
    assert result.samples[0].metrics["lpips"] is not None
