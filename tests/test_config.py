"""CompVis YAML -> typed config conversion: the shipped configs and the error paths."""

from __future__ import annotations

import pytest

import ldm
from ldm.config import SUPPORTED_TARGETS, ConfigError

from .conftest import REPO

SHIPPED = {
    "configs/ldm/inpainting_big.yaml": ldm.DiffusionConfig.inpainting_big(),
    "configs/ldm/bsr_sr.yaml": ldm.DiffusionConfig.bsr_sr(),
    "configs/ldm/txt2img-1p4B-eval.yaml": ldm.DiffusionConfig.txt2img_1p4b(),
    "configs/first_stage_models/kl-f8.yaml": ldm.AutoencoderConfig.kl_f8(),
    "configs/first_stage_models/vq-f4.yaml": ldm.AutoencoderConfig.vq_f4(),
    "configs/first_stage_models/vq-f4-noattn.yaml": ldm.AutoencoderConfig.vq_f4_noattn(),
    "configs/tiny/inpainting.yaml": ldm.DiffusionConfig.tiny("inpainting"),
    "configs/tiny/superres.yaml": ldm.DiffusionConfig.tiny("superres"),
    "configs/tiny/txt2img.yaml": ldm.DiffusionConfig.tiny("txt2img"),
}


@pytest.mark.parametrize("path", sorted(SHIPPED))
def test_shipped_yaml_converts_to_preset(path):
    assert ldm.load_config(REPO / path) == SHIPPED[path]


def test_conditioning_derived_like_upstream():
    inpaint = ldm.load_config(REPO / "configs/ldm/inpainting_big.yaml")
    assert (inpaint.conditioning_key, inpaint.cond_stage, inpaint.use_ema) == ("concat", "first_stage", True)
    txt = ldm.load_config(REPO / "configs/ldm/txt2img-1p4B-eval.yaml")
    assert (txt.conditioning_key, txt.cond_stage, txt.use_ema, txt.scale_factor) == ("crossattn", "bert", False, 0.18215)
    assert txt.text_encoder.n_layer == 32 and txt.text_encoder.vocab_size == 30522


def _edit(tmp_path, old: str, new: str, src: str = "configs/tiny/superres.yaml"):
    text = (REPO / src).read_text()
    assert old in text
    path = tmp_path / "edited.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_unknown_target_lists_supported(tmp_path):
    path = _edit(tmp_path, "cond_stage_config:\n      target: torch.nn.Identity",
                 "cond_stage_config:\n      target: ldm.modules.encoders.modules.ClassEmbedder")
    with pytest.raises(ConfigError) as err:
        ldm.load_config(path)
    msg = str(err.value)
    assert "ldm.modules.encoders.modules.ClassEmbedder" in msg and str(path) in msg
    assert all(target in msg for target in SUPPORTED_TARGETS)


def test_training_only_parts_are_ignored(tmp_path):
    path = _edit(tmp_path, "    first_stage_key: image\n",
                 "    first_stage_key: image\n    scheduler_config:\n      target: some.Scheduler\n"
                 "    monitor: val/loss\n    ckpt_path: /nowhere.ckpt\n")
    assert ldm.load_config(path) == ldm.DiffusionConfig.tiny("superres")


@pytest.mark.parametrize("old,new,needle", [
    ("    channels: 3\n", "    channels: 3\n    parameterization: x0\n", "parameterization"),
    ("    channels: 3\n", "    channels: 3\n    beta_schedule: cosine\n", "beta_schedule"),
    ("    channels: 3\n", "    channels: 3\n    frobnicate: 7\n", "frobnicate"),
    ("        num_head_channels: 16\n", "        num_head_channels: 16\n        dims: 3\n", "dims"),
    ("          ch: 32\n", "          ch: 32\n          attn_type: linear\n", "attn_type"),
])
def test_unsupported_settings_are_errors(tmp_path, old, new, needle):
    with pytest.raises(ConfigError, match=needle):
        ldm.load_config(_edit(tmp_path, old, new))


def test_not_a_compvis_config(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("foo: 1\n")
    with pytest.raises(ConfigError, match="top-level `model:`"):
        ldm.load_config(path)
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not a readable YAML"):
        ldm.load_config(path)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        ldm.load_config(tmp_path / "nope.yaml")
