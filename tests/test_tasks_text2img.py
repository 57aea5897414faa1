"""Text-to-image runner on the demo model: prompts, guidance, samplers, saved subset, references, metrics."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from ldm_lab.tasks import run_text2img
from ldm_lab.tasks.text2img import center_square, saved_indices
from tests.test_tasks_support import (  # noqa: F401 (offline_env is an autouse fixture)
    Interrupt,
    demo_data,
    demo_models,
    image_std,
    interrupt_after,
    offline_env,
    read_text,
    standin_weights,
    tiny_clip,
    tree,
)


def run(output_dir, **kw):
    config, ckpt = demo_models()["txt2img"]
    args = dict(dataset_root=demo_data()["text2img_dataset"], output_dir=output_dir, config_path=config,
                model_path=ckpt, max_samples=3, ddim_steps=4, batch_size=4, progress=False)
    return run_text2img(**{**args, **kw})


def test_outputs_prompts_guidance_and_references(tmp_path):
    result = run(tmp_path / "t2i")
    out = result.output_dir
    assert [f.name for f in sorted(out.glob("generated_*.png"))] == [f"generated_{i:05d}.png" for i in (1, 2, 3)]
    assert Image.open(out / "generated_00001.png").size == (64, 64)  # latent 8x8 from the config, KL f8
    assert image_std(out / "generated_00001.png") > 10  # the demo weights give structured, not flat, images
    assert Image.open(out / "references/real_00001.png").size == (64, 64)
    run_json = json.loads(read_text(out / "run.json"))
    assert run_json["sampling"]["guidance_scale"] == 7.5 and run_json["sampling"]["latent_shape"] == [4, 8, 8]
    assert run_json["resume_key"]["guidance_scale"] == 7.5 and "tokenizer_sha256" in run_json["resume_key"]
    assert run_json["model"]["tokenizer"].endswith("configs/tiny/vocab.txt")  # the vocab beside the config
    assert "centre square crop" in run_json["dataset"]["reference_preprocessing"]
    captions = [s["caption"] for s in run_json["samples"]]
    assert all(isinstance(c, str) and c for c in captions) and result.samples[0].caption == captions[0]
    with open(out / "per_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "file", "clip_cosine", "clipscore"] and rows[0]["clip_cosine"] == ""
    metrics = result.metrics
    for name in ("clip_cosine", "clipscore", "fid", "kid", "precision", "recall"):
        assert "ldm-lab weights" in metrics["model"][name]["unavailable"], name
    assert "ldm-lab weights" in metrics["baseline"]["clip_cosine"]["unavailable"]
    txt = read_text(out / "evaluation_results.txt")
    assert "Number of samples: 3" in txt and f"Caption: {captions[0]}" in txt and "FID: unavailable" in txt
    assert json.loads(read_text(out / "evaluation_results.json"))["samples"][2]["generated_image"] == "generated_00003.png"


def test_save_images_ratio_keeps_a_subset_but_measures_all(tmp_path):
    assert saved_indices(10, 0.1) == {0} and saved_indices(4, 0.5) == {0, 3} and saved_indices(3, 1.0) == {0, 1, 2}
    result = run(tmp_path / "ratio", max_samples=4, save_images_ratio=0.5)
    out = result.output_dir
    assert sorted(p.name for p in out.glob("generated_*.png")) == ["generated_00001.png", "generated_00004.png"]
    assert not (out / ".unsaved").exists() and "result" not in result.samples[1].files
    with open(out / "per_sample.csv", newline="") as f:
        assert [r["file"] for r in csv.DictReader(f)] == ["generated_00001.png", "", "", "generated_00004.png"]
    assert "(not saved - controlled by save_images_ratio)" in read_text(out / "evaluation_results.txt")


@pytest.mark.parametrize("sampler", ["plms", "dpmpp2m"])
def test_other_samplers_run(tmp_path, sampler):
    result = run(tmp_path / sampler, sampler=sampler, max_samples=1, ddim_steps=5)
    assert result.run["resume_key"]["sampler"] == sampler and (result.output_dir / "generated_00001.png").is_file()


def test_resume_and_batch_size_give_identical_files(tmp_path, monkeypatch):
    reference = run(tmp_path / "ref", batch_size=1)
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        run(tmp_path / "resumed", batch_size=3)
    monkeypatch.setattr("ldm_lab.tasks.run_dir.after_image_hook", None)
    run(tmp_path / "resumed", batch_size=3)
    assert tree(tmp_path / "resumed") == tree(reference.output_dir)
    assert read_text(tmp_path / "resumed" / "metrics.json") == read_text(reference.output_dir / "metrics.json")
    with pytest.raises(ValueError, match="guidance_scale: run.json has 7.5, now 3.0"):
        run(tmp_path / "resumed", scale=3.0)


def test_bad_inputs_name_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="`dataset_root`"):
        run(tmp_path / "a", dataset_root=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="`model_path` not found"):
        run(tmp_path / "b", model_path=tmp_path / "none.ckpt")
    with pytest.raises(ValueError, match="`config_path` .*inpainting.yaml describes"):
        run(tmp_path / "c", config_path=demo_models()["inpainting"][0])
    with pytest.raises(ValueError, match="`ddim_steps`"):
        run(tmp_path / "d", ddim_steps=9)
    with pytest.raises(ValueError, match="`save_images_ratio` must be in"):
        run(tmp_path / "e", save_images_ratio=0)
    from ldm.tokenizer import resolve_vocab

    with pytest.raises(ValueError, match=r"`tokenizer` .* 30522 tokens but the model's embedding holds 128"):
        run(tmp_path / "f", tokenizer=resolve_vocab())


def test_reference_preprocessing_is_centre_crop_and_antialiased_resize():
    image = Image.fromarray(np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (100, 1, 3)))  # 200x100
    out = center_square(image, 50)
    assert out.shape == (50, 50, 3)
    assert 45 < out[0, 0, 0] < 60 and 140 < out[0, -1, 0] < 155  # the centre 100 columns (50..149)


def test_standin_clip_and_inception_give_numbers_and_a_real_image_baseline(tmp_path, monkeypatch):
    from ldm_lab.tasks import measure

    real_fid = measure.fid_result  # 16 dims keep the sqrtm small; see the inpainting test
    monkeypatch.setattr(measure, "fid_result", lambda a, b, **kw: real_fid(a[:, :16], b[:, :16], **kw))
    name, clip_path = tiny_clip()
    weights = {"inception-fid": standin_weights()["inception-fid"], "clip": clip_path}
    result = run(tmp_path / "m", clip_model=name, clip_pretrained="", metric_weights=weights)
    model, real = result.metrics["model"], result.metrics["baseline"]
    assert isinstance(model["fid"]["value"], float) and "centre square crop" in model["fid"]["protocol"]
    assert "vgg16" in model["precision"]["unavailable"]
    for metrics in (model, real):
        assert -1 <= metrics["clip_cosine"]["value"] <= 1 and metrics["clipscore"]["value"] >= 0
        assert name in metrics["clip_cosine"]["protocol"]
    assert result.baseline_samples[0].metrics["clip_cosine"] is not None
