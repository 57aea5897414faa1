"""`ldm.load`: strict key-for-key loading, EMA, safety, hashes and every error path."""

from __future__ import annotations

import hashlib

import pytest
import torch

import ldm
from ldm.checkpoint import CheckpointError, ema_key

from .conftest import TINY_CONFIGS, make_tiny_checkpoint


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("family", ["inpainting", "superres", "txt2img"])
def test_tiny_roundtrip_loads_every_tensor(tiny_ckpts, tiny_models, family):
    config, ckpt, state = tiny_ckpts[family]
    model = tiny_models[family]
    loaded = model.state_dict()
    use_ema = model.config.use_ema
    for key, value in loaded.items():
        source = ema_key(key) if use_ema and key.startswith("model.diffusion_model.") else key
        torch.testing.assert_close(value, state[source], rtol=0, atol=0, msg=key)
    report = model.load_report
    assert (report.config_sha256, report.ckpt_sha256) == (_sha(config), _sha(ckpt))
    assert report.other_entries == ["global_step: 1", "epoch: 0"]
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_ema_weights_used_and_reported(tiny_ckpts, tiny_models):
    model, (_, _, state) = tiny_models["superres"], tiny_ckpts["superres"]
    key = "model.diffusion_model.out.2.weight"
    assert torch.equal(model.state_dict()[key], state[ema_key(key)])
    assert not torch.equal(state[key], state[ema_key(key)])
    assert model.load_report.ema.startswith("used")
    assert model.load_report.ignored_keys == ["model_ema.decay", "model_ema.num_updates"]


def test_ema_off_uses_raw_weights_and_lists_ema_keys(tiny_ckpts):
    config, ckpt, state = tiny_ckpts["superres"]
    model = ldm.load(config, ckpt, use_ema=False)
    key = "model.diffusion_model.out.2.weight"
    assert torch.equal(model.state_dict()[key], state[key])
    assert model.load_report.ema == "off"
    assert ema_key(key) in model.load_report.ignored_keys


def test_ema_requested_but_absent_warns(tmp_path):
    config, ckpt, state = make_tiny_checkpoint("superres", tmp_path, ema=False)
    with pytest.warns(UserWarning, match="no model_ema"):
        model = ldm.load(config, ckpt)
    assert model.info["ema"] == "requested but absent: raw weights used"
    assert torch.equal(model.state_dict()["model.diffusion_model.out.2.weight"], state["model.diffusion_model.out.2.weight"])


def test_known_extras_ignored_and_listed(tmp_path):
    extra = {"ddim_sigmas": torch.zeros(50), "ddim_alphas": torch.ones(50), "lvlb_weights": torch.ones(1000)}
    config, ckpt, _ = make_tiny_checkpoint("txt2img", tmp_path, extra=extra)
    model = ldm.load(config, ckpt)
    assert model.load_report.ignored_keys == ["ddim_alphas", "ddim_sigmas", "lvlb_weights"]


def test_missing_and_unknown_keys_are_listed_with_both_files(tmp_path):
    config, ckpt, state = make_tiny_checkpoint("txt2img", tmp_path)
    del state["model.diffusion_model.out.2.weight"]
    state["model.diffusion_model.brand_new.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(CheckpointError) as err:
        ldm.load(config, ckpt)
    msg = str(err.value)
    assert str(ckpt) in msg and str(config) in msg
    assert "missing learned weights 1 (model.diffusion_model.out.2.weight)" in msg
    assert "unknown entries 1 (model.diffusion_model.brand_new.weight)" in msg


def test_many_missing_keys_listing_is_capped(tmp_path):
    config, ckpt, state = make_tiny_checkpoint("txt2img", tmp_path)
    for k in [k for k in state if k.startswith("first_stage_model.")]:
        del state[k]
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(CheckpointError, match=r"missing learned weights \d{2,} \(.*, \.\.\.\)"):
        ldm.load(config, ckpt)


def test_config_checkpoint_mismatch_names_both_files(tiny_ckpts):
    _, inpaint_ckpt, _ = tiny_ckpts["inpainting"]
    with pytest.raises(CheckpointError) as err:
        ldm.load(TINY_CONFIGS["superres"], inpaint_ckpt)
    msg = str(err.value)
    assert str(inpaint_ckpt) in msg and str(TINY_CONFIGS["superres"]) in msg and "do not match" in msg


def test_schedule_mismatch_is_an_error(tmp_path, tiny_ckpts):
    config, _, state = tiny_ckpts["superres"]
    edited = tmp_path / "sr.yaml"
    edited.write_text(config.read_text().replace("linear_end: 0.0155", "linear_end: 0.0205"))
    ckpt = tmp_path / "sr.ckpt"
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(CheckpointError, match="noise schedule"):
        ldm.load(edited, ckpt)


def test_truncated_and_wrong_type_files(tmp_path, tiny_ckpts):
    config, ckpt, _ = tiny_ckpts["txt2img"]
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ldm.load(config, truncated)
    text = tmp_path / "notes.ckpt"
    text.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        ldm.load(config, text)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        ldm.load(config, tmp_path / "missing.ckpt")


class _Callback:  # stands in for a Lightning object pickled into a checkpoint
    def __init__(self):
        self.best = 1.0


def test_pickled_objects_load_inert_by_default_and_fully_with_trust(tmp_path, tiny_ckpts):
    config, _, state = tiny_ckpts["txt2img"]
    ckpt = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state, "callbacks": _Callback()}, ckpt)
    model = ldm.load(config, ckpt)  # restricted unpickler: the object is a placeholder, never built
    assert model.load_report.other_entries == ["callbacks: _Callback (not executed)"]
    trusted = ldm.load(config, ckpt, trust_pickle=True)  # the class is importable here: really unpickled
    assert trusted.load_report.other_entries == ["callbacks: _Callback"]
    assert torch.equal(trusted.state_dict()["model.diffusion_model.out.2.weight"],
                       model.state_dict()["model.diffusion_model.out.2.weight"])


def test_safetensors_checkpoint(tmp_path, tiny_ckpts):
    from safetensors.torch import save_file

    config, _, state = tiny_ckpts["txt2img"]
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = ldm.load(config, path)
    assert model.load_report.ckpt_format == "safetensors"
    assert torch.equal(model.state_dict()["model.diffusion_model.out.2.weight"], state["model.diffusion_model.out.2.weight"])


def test_inpainting_cond_stage_is_the_first_stage(tiny_models):
    model = tiny_models["inpainting"]
    assert model.cond_stage_model is model.first_stage_model
    keys = model.state_dict().keys()
    assert "cond_stage_model.encoder.conv_in.weight" in keys and "first_stage_model.encoder.conv_in.weight" in keys


def test_dtype_casts_networks_but_not_schedule(tiny_ckpts):
    config, ckpt, _ = tiny_ckpts["txt2img"]
    model = ldm.load(config, ckpt, dtype=torch.bfloat16)
    assert model.unet.out[2].weight.dtype == torch.bfloat16
    assert model.alphas_cumprod.dtype == torch.float32
    with pytest.raises(ValueError, match="`dtype`"):
        ldm.load(config, ckpt, dtype=torch.int8)


def test_first_stage_only_checkpoint(tmp_path):
    cfg_path = tmp_path / "vq.yaml"
    cfg_path.write_text(
        "model:\n  target: ldm.models.autoencoder.VQModel\n  params:\n    embed_dim: 3\n    n_embed: 16\n"
        "    ddconfig: {double_z: false, z_channels: 3, resolution: 32, in_channels: 3, out_ch: 3, ch: 32,"
        " ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [], dropout: 0.0}\n"
        "    lossconfig: {target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator}\n")
    model = ldm.build_model(ldm.load_config(cfg_path))
    state = dict(model.state_dict()) | {"loss.discriminator.main.0.weight": torch.zeros(1)}
    torch.save({"state_dict": state}, tmp_path / "vq.ckpt")
    loaded = ldm.load(cfg_path, tmp_path / "vq.ckpt")
    assert isinstance(loaded, ldm.Autoencoder)
    assert loaded.load_report.ignored_keys == ["loss.discriminator.main.0.weight"]


# ---- the cheap pairing check (names and shapes only) and its one-line reason ---------------------------------
@pytest.mark.parametrize("config, ckpt, facts", [
    ("inpainting", "superres", ["UNet input channels: config 7, checkpoint 6"]),
    ("superres", "inpainting", ["UNet input channels: config 6, checkpoint 7"]),
    ("txt2img", "superres", ["UNet input channels: config 4, checkpoint 6", "UNet output channels: config 4, checkpoint 3",
                             "UNet attention layers: config 14, checkpoint 4",
                             "UNet cross-attention context width: config 32, checkpoint none",
                             "first stage: config KL, checkpoint VQ", "first-stage latent channels: config 4, checkpoint 3",
                             "text encoder: config BERT, checkpoint none"]),
])
def test_pairing_check_states_the_architecture_difference(tiny_ckpts, config, ckpt, facts):
    cfg_path, ckpt_path = TINY_CONFIGS[config], tiny_ckpts[ckpt][1]
    with pytest.raises(CheckpointError) as cheap:
        ldm.check_pairing(cfg_path, ckpt_path)
    with pytest.raises(CheckpointError) as full:
        ldm.load(cfg_path, ckpt_path)
    for err in (cheap.value, full.value):
        msg = str(err)
        assert msg.startswith(f"checkpoint {ckpt_path} and config {cfg_path} do not match: ") and "\n" not in msg
        assert msg.split(" do not match: ")[1].split(" (")[0] == "; ".join(facts)


def test_pairing_check_states_a_model_channel_difference(tiny_ckpts, tmp_path):
    text = TINY_CONFIGS["superres"].read_text()
    assert "model_channels: 64" in text
    narrow = tmp_path / "superres-32.yaml"
    narrow.write_text(text.replace("model_channels: 64", "model_channels: 32"))
    ckpt_path = tiny_ckpts["superres"][1]
    for check in (ldm.check_pairing, ldm.load):
        with pytest.raises(CheckpointError, match=r"do not match: UNet model channels: config 32, checkpoint 64 \("):
            check(narrow, ckpt_path)


def test_pairing_check_passes_matching_pairs_and_lists_keys_without_an_architecture_difference(tiny_ckpts, tmp_path):
    for config, ckpt, _ in tiny_ckpts.values():
        ldm.check_pairing(config, ckpt)
    config, _, state = tiny_ckpts["txt2img"]
    state = dict(state)
    del state["model.diffusion_model.out.2.weight"]  # one tensor missing is not another architecture
    torch.save({"state_dict": state}, tmp_path / "one-missing.ckpt")
    with pytest.raises(CheckpointError, match=r"do not match: missing learned weights 1 \(model\.diffusion_model\.out"):
        ldm.check_pairing(config, tmp_path / "one-missing.ckpt")


def test_pairing_check_reads_no_weights(tiny_ckpts, tmp_path):
    from safetensors.torch import save_file

    from ldm.checkpoint import read_checkpoint
    from ldm_lab.lightning_layout import save_lightning_checkpoint

    config, _, state = tiny_ckpts["superres"]
    legacy = save_lightning_checkpoint(tmp_path / "last.ckpt", dict(state), legacy=True)
    shapes_only = read_checkpoint(legacy, shapes_only=True)
    everything = sum(t.untyped_storage().nbytes() for t in {id(t): t for t in shapes_only.state.values()}.values())
    assert shapes_only.skipped_bytes >= everything > 0  # every storage skipped: training state and weights
    assert {k: v.shape for k, v in shapes_only.state.items()} == {k: v.shape for k, v in state.items()}
    ldm.check_pairing(config, legacy)
    sft = tmp_path / "sr.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(sft))
    ldm.check_pairing(config, sft)
    with pytest.raises(CheckpointError, match="UNet input channels: config 7, checkpoint 6"):
        ldm.check_pairing(TINY_CONFIGS["inpainting"], sft)
