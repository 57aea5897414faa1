"""Shared runner pieces: signatures and defaults, device/dtype parsing, plain JSON, demo checkpoints."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

import ldm
from ldm_lab.device import parse_device, parse_dtype
from ldm_lab.results import load_run, plain, read_per_sample_csv, write_json, write_per_sample_csv
from ldm_lab.tasks import TASKS
from ldm_lab.tasks.run_dir import diff_keys
from tests.test_tasks_support import demo_models, offline_env  # noqa: F401 (offline_env is an autouse fixture)


def test_runners_are_keyword_only_with_demo_defaults():
    expected = {
        "inpainting": {"data_dir": "data/demo/inpainting_dataset", "output_dir": "reports/demo/inpainting",
                       "config": "configs/tiny/inpainting.yaml", "model": "models/demo/inpainting.ckpt",
                       "max_samples": 0, "steps": 50, "sampler": "ddim", "eta": 0.0, "seed": 0, "batch_size": 4,
                       "device": "auto", "dtype": "fp32", "resolution": "512", "overwrite": False,
                       "fid": True, "lpips": True, "progress": True},
        "superres": {"dataset_path": "data/demo/super-resolution_dataset", "config": "configs/tiny/superres.yaml",
                     "checkpoint": "models/demo/superres.ckpt", "scale": 4, "steps": 100, "eta": 1.0,
                     "tile": "auto"},
        "text2img": {"dataset_root": "data/demo/text2img_dataset", "config_path": "configs/tiny/txt2img.yaml",
                     "model_path": "models/demo/txt2img.ckpt", "ddim_steps": 50, "scale": 7.5,
                     "save_images_ratio": 1.0, "tokenizer": None, "clip_model": "ViT-B-32"},
    }
    for task, defaults in expected.items():
        params = inspect.signature(TASKS[task]).parameters
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values()), task
        for name, value in defaults.items():
            assert params[name].default == value, (task, name)
        for p in params.values():  # literals only, so the CLI and the notebooks' parameters cell can mirror them
            assert p.default is None or isinstance(p.default, str | int | float | bool), (task, p.name)


def test_device_and_dtype_parsing():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("fp32", torch.device("cpu")) is torch.float32
    with pytest.raises(ValueError, match=r"`device` must be one of \['auto', 'cpu', 'cuda'\]"):
        parse_device("gpu")
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        parse_dtype("float16")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        parse_dtype("bf16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            parse_device("cuda")


def test_json_is_plain_and_csv_round_trips(tmp_path):
    import numpy as np

    obj = {"a": np.float32(0.5), "b": (1, np.int64(2)), "c": math.inf, "d": tmp_path, "e": [None, float("nan")]}
    assert plain(obj) == {"a": 0.5, "b": [1, 2], "c": "inf", "d": str(tmp_path), "e": [None, "nan"]}
    write_json(tmp_path / "x.json", obj)
    assert json.loads((tmp_path / "x.json").read_text())["c"] == "inf"
    with pytest.raises(TypeError, match="cannot write"):
        plain({"f": object()})
    write_per_sample_csv(tmp_path / "p.csv", [{"id": "a", "file": "x.png", "psnr_y": "inf", "ssim_y": ""}],
                         ["psnr_y", "ssim_y"])
    assert read_per_sample_csv(tmp_path / "p.csv") == [{"id": "a", "file": "x.png", "psnr_y": math.inf, "ssim_y": None}]


def test_load_run_explains_unfinished_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run in"):
        load_run(tmp_path)
    write_json(tmp_path / "run.json", {"task": "inpainting", "status": "running"})
    with pytest.raises(FileNotFoundError, match="not finished .*rerun the same command to resume"):
        load_run(tmp_path)


def test_diff_keys_lists_every_changed_field():
    assert diff_keys({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == [
        "b: run.json has 2, now 3", "c: run.json has '<absent>', now 4"]


def test_demo_models_are_deterministic_idempotent_and_load_strictly(tmp_path):
    from ldm_lab.demo_models import ensure_random_models

    first = demo_models()
    again = ensure_random_models(tmp_path)
    for family, (config, ckpt) in first.items():
        assert again[family][0] == config and again[family][1].read_bytes() == ckpt.read_bytes(), family
    mtimes = {f: c.stat().st_mtime_ns for f, (_, c) in again.items()}
    ensure_random_models(tmp_path)
    assert {f: c.stat().st_mtime_ns for f, (_, c) in again.items()} == mtimes  # second call is a no-op
    again["superres"][1].write_bytes(b"damaged")
    ensure_random_models(tmp_path)
    assert again["superres"][1].read_bytes() == first["superres"][1].read_bytes()
    model = ldm.load(*first["inpainting"])
    assert model.load_report.ema.startswith("used") and not model.load_report.warnings
    raw = torch.load(first["inpainting"][1], weights_only=True)["state_dict"]
    assert any(k.startswith("cond_stage_model.") for k in raw) and "model_ema.decay" in raw
