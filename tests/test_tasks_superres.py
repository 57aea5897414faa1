"""Super-resolution runner on the demo model: x4 native, x2 explicit, tiling, bicubic baseline, invariance."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_lab.tasks import run_superres
from ldm_lab.tasks.tiling import blend_tiles, tile_starts, tile_weights
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


def run(output_dir, **kw):
    config, ckpt = demo_models()["superres"]
    args = dict(dataset_path=hr_folder(), output_dir=output_dir, config=config, checkpoint=ckpt, steps=4,
                batch_size=4, progress=False)
    return run_superres(**{**args, **kw})


def test_x4_outputs_names_metrics_and_baseline(tmp_path):
    result = run(tmp_path / "x4")
    out = result.output_dir
    for i in range(3):
        assert (out / f"sample_results/result_{i:03d}_sr.png").is_file()
        assert (out / f"sr/sr_{i + 1:05d}.png").read_bytes() == (out / f"sample_results/result_{i:03d}_sr.png").read_bytes()
    hr = np.asarray(Image.open(out / "sample_results/result_000_hr.png"))
    assert hr.shape == (64, 64, 3)
    assert Image.open(out / "sr/sr_00001.png").size == (64, 64) and Image.open(out / "inputs/lr_00001.png").size == (16, 16)
    np.testing.assert_array_equal(hr, np.asarray(Image.open(out / "references/hr_00001.png")))
    with open(out / "per_sample.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["id", "file", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "lpips", "edge_iou"]
    metrics = json.loads(read_text(out / "metrics.json"))
    assert metrics["method"] == "x4 LDM on the native LR"
    assert "y-bt601-float,crop4" in metrics["model"]["psnr_y"]["protocol"] and metrics["model"]["psnr_y"]["n"] == 3
    assert metrics["baseline"]["psnr_y"]["value"] > metrics["model"]["psnr_y"]["value"]  # random weights lose
    for name in ("fid", "kid", "precision", "recall", "lpips"):
        assert "ldm-lab weights" in metrics["model"][name]["unavailable"], name
    legacy = json.loads(read_text(out / "urban100_x4_results.json"))
    assert legacy["scale_factor"] == 4 and legacy["num_images"] == 3 and "fid_score" not in legacy
    assert legacy["visual_quality"]["psnr"] == metrics["model"]["psnr_y"]["value"]
    run_json = json.loads(read_text(out / "run.json"))
    assert run_json["sampling"]["eta"] == 1.0 and run_json["sampling"]["tiled_samples"] == []
    assert run_json["resume_key"]["scale"] == 4 and run_json["resume_key"]["tile"] == "auto"
    assert run_json["dataset"]["selection"]["mode"] == "generic"


def test_x2_is_model_x4_then_half_and_labelled(tmp_path):
    result = run(tmp_path / "x2", scale=2, dataset_path=hr_folder(32, 2))
    out = result.output_dir
    assert Image.open(out / "inputs/lr_00001.png").size == (16, 16)
    assert Image.open(out / "sr/sr_00001.png").size == (32, 32)  # x4 = 64, then antialiased x1/2 = HR size
    assert result.metrics["method"].startswith("x2 = LDM x4 on the native LR, then antialiased bicubic x2/4")
    assert "crop2" in result.metrics["model"]["psnr_y"]["protocol"]
    assert (out / "urban100_x2_results.json").is_file()


def test_paired_layout_reads_the_demo_x4_pairs(tmp_path):
    result = run(tmp_path / "paired", dataset_path=demo_data()["super-resolution_dataset"], max_samples=1)
    assert result.samples[0].id == "img_001" and result.run["dataset"]["selection"]["mode"] == "paired"
    assert Image.open(result.output_dir / "sr/sr_00001.png").size == (128, 128)


def test_tiled_sampling_is_recorded_and_changes_the_key(tmp_path):
    whole = run(tmp_path / "whole", max_samples=1)
    tiled = run(tmp_path / "tiled", max_samples=1, tile="tiled", tile_size=8, tile_stride=4)
    assert tiled.run["sampling"]["tiled_samples"] == [0] and tiled.run["resume_key"]["tile_size"] == 8
    a, b = (np.asarray(Image.open(r.output_dir / "sr/sr_00001.png"), dtype=float) for r in (whole, tiled))
    assert a.shape == b.shape and np.abs(a - b).mean() > 0
    with pytest.raises(ValueError, match="tile: run.json has 'tiled', now 'whole'"):
        run(tmp_path / "tiled", max_samples=1, tile="whole", tile_size=8, tile_stride=4)
    with pytest.raises(ValueError, match="`tile_size` must be"):
        run(tmp_path / "bad", tile_size=7)


def test_batch_size_and_interruption_do_not_change_eta_one_samples(tmp_path, monkeypatch):
    reference = run(tmp_path / "ref", batch_size=3)
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupt):
        run(tmp_path / "resumed", batch_size=3)
    monkeypatch.setattr("ldm_lab.tasks.run_dir.after_image_hook", None)
    run(tmp_path / "resumed", batch_size=1)
    assert tree(tmp_path / "resumed") == tree(reference.output_dir)
    for name in ("metrics.json", "per_sample.csv", "per_sample_baseline.csv"):
        assert read_text(tmp_path / "resumed" / name) == read_text(reference.output_dir / name)


def test_bad_inputs_name_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="`dataset_path`"):
        run(tmp_path / "a", dataset_path=tmp_path / "missing")
    with pytest.raises(ValueError, match="`checkpoint` does not fit `config`: .* UNet input channels: config 6, checkpoint 7"):
        run(tmp_path / "b", checkpoint=demo_models()["inpainting"][1])
    with pytest.raises(ValueError, match="`scale` must be 2 or 4"):
        run(tmp_path / "c", scale=3)
    with pytest.raises(ValueError, match="`tile` must be one of"):
        run(tmp_path / "d", tile="sometimes")
    with pytest.raises(ValueError, match="`dtype` 'fp16' needs a CUDA device"):
        run(tmp_path / "e", device="cpu", dtype="fp16")


def test_tiles_cover_the_image_and_blend_exactly():
    assert tile_starts(10, 4, 3) == [0, 3, 6] and tile_starts(11, 4, 3) == [0, 3, 6, 7] and tile_starts(4, 8, 4) == [0]
    w = tile_weights(5, 5)
    assert w[2, 2] == 0.5 and w[0, 0] == pytest.approx(0.01)
    x = torch.randn(1, 3, 11, 13)
    torch.testing.assert_close(blend_tiles(lambda t: t * 2, [x], tile=4, stride=3), x * 2)
    up = blend_tiles(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), [x], tile=4, stride=2, scale=2)
    torch.testing.assert_close(up, x.repeat_interleave(2, -1).repeat_interleave(2, -2))
