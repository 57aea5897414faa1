"""The demo-model training script's pieces (scripts/train_demo_models.py) and the committed trained models."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import ldm
from ldm_lab.data.resize import bicubic_downscale
from ldm_lab.demo_models import DEMO_DIR, demo_models

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train():
    spec = importlib.util.spec_from_file_location("train_demo_models", REPO / "scripts" / "train_demo_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(train):
    return [train.photo_tensor(f) for f in ("brick.png", "retina.jpg", "ihc.png")]


def test_training_photos_never_include_the_demo_evaluation_photos(train):
    from ldm_lab.data.demo import PHOTOS

    demo = {file for file, _, _ in PHOTOS}
    assert demo <= set(train.HELD_OUT) and "motorcycle_right.png" in train.HELD_OUT
    assert not demo & set(train.TRAIN_FILES) and "motorcycle_right.png" not in train.TRAIN_FILES


def test_random_crops_are_seeded_in_range_and_jittered(train, photos):
    a = train.random_crops(photos, 6, 32, torch.Generator().manual_seed(0))
    b = train.random_crops(photos, 6, 32, torch.Generator().manual_seed(0))
    c = train.random_crops(photos, 6, 32, torch.Generator().manual_seed(1))
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    grey = photos[0]  # brick.png is grey: without colour augmentation every crop stays grey
    plain = train.random_crops([grey], 8, 32, torch.Generator().manual_seed(2), colour=False)
    assert torch.equal(plain[:, 0], plain[:, 1]) and torch.equal(plain[:, 1], plain[:, 2])
    tinted = train.random_crops([grey], 8, 32, torch.Generator().manual_seed(2))
    assert not torch.equal(tinted[:, 0], tinted[:, 1])
    # min_fraction 1: the crop is the whole (square) photo, resized, maybe flipped
    whole = train.centre_square(grey, 32)
    for crop in train.random_crops([grey], 4, 32, torch.Generator().manual_seed(3), min_fraction=1.0, colour=False):
        assert torch.allclose(crop, whole, atol=1e-6) or torch.allclose(crop, whole.flip(-1), atol=1e-6)


def test_kmeans_matches_scipy_lloyd_from_the_same_start(train):
    from scipy.cluster.vq import kmeans2

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (5, 3))
    points = torch.tensor(np.concatenate([c + rng.normal(0, 1, (200, 3)) for c in centres]), dtype=torch.float32)
    start = points[torch.randperm(len(points), generator=torch.Generator().manual_seed(4))[:5]].numpy()
    expected, _ = kmeans2(points.numpy().astype(np.float64), start.astype(np.float64), iter=30, minit="matrix")
    got = train.kmeans(points, 5, torch.Generator().manual_seed(4), iterations=30).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("family", ["inpainting", "superres"])
def test_linear_codec_is_written_into_the_vq_architecture_exactly(train, family):
    """encode / decode of the CompVis VQ autoencoder (attention or not) equal the codec's own convolutions."""
    torch.manual_seed(0)
    ae = ldm.build_model(ldm.load_config(REPO / "configs" / "tiny" / f"{family}.yaml")).first_stage_model.eval()
    enc, dec = 0.3 * torch.randn(4, 3, 3), 0.3 * torch.randn(4, 3, 3)
    train.write_linear_codec(ae, enc, dec)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        z = ae.encode(x)
        expected = train.codec_encode(x, enc)
        assert z.shape == (2, 3, 8, 12)
        assert (z - expected).abs().max() <= 1e-4 * expected.abs().max()
        y = ae.decode(z, force_not_quantize=True)
        expected = train.codec_decode(z, dec)
        assert (y - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_latent_normalisation_keeps_decoding_and_gives_unit_std(train, kind):
    torch.manual_seed(0)
    ae = ldm.Autoencoder(ldm.AutoencoderConfig.tiny(kind)).eval()
    x = torch.rand(4, 3, 32, 32)

    def latent():
        out = ae.encode(x * 2 - 1)
        return (out, None) if torch.is_tensor(out) else (out.mean, out.std)

    with torch.no_grad():
        before, before_std = latent()
        decoded = ae.decode(before)
        snapped = ae.quantize(before) if kind == "vq" else None
        gain = train.normalise_latent(ae, 0.18215, x)
        after, after_std = latent()
        assert torch.allclose(after, gain * before, rtol=1e-4, atol=1e-5)
        assert abs((0.18215 * after).std().item() - 1) < 1e-4
        assert torch.allclose(ae.decode(after), decoded, rtol=1e-4, atol=1e-4)
        if kind == "kl":  # the posterior's std scales with its mean, so samples scale too
            assert torch.allclose(after_std, gain * before_std, rtol=1e-4)
        else:  # the same codes are picked
            assert torch.allclose(ae.quantize(after), gain * snapped, rtol=1e-4, atol=1e-5)


def test_checkpoint_holds_float16_weights_with_shared_tensors_stored_once(train, tmp_path):
    cfg = ldm.load_config(REPO / "configs" / "tiny" / "inpainting.yaml")
    torch.manual_seed(0)
    model = ldm.build_model(cfg)
    name = "model.diffusion_model.out.2.weight"
    with torch.no_grad():  # train_diffusion leaves the EMA weights in the model
        model.unet.out[2].weight.add_(0.5)
    expected = model.unet.out[2].weight.detach().half()
    path = tmp_path / "inpainting.ckpt"
    path.write_bytes(train.checkpoint_bytes(model, steps=7))
    state = torch.load(path, weights_only=True)["state_dict"]
    assert state[name].dtype == torch.float16 and torch.equal(state[name], expected)
    ema_name = ldm.checkpoint.ema_key(name)
    assert state[ema_name].untyped_storage().data_ptr() == state[name].untyped_storage().data_ptr()
    first = "first_stage_model.decoder.conv_out.weight"
    assert state["cond_stage_model.decoder.conv_out.weight"].untyped_storage().data_ptr() == \
        state[first].untyped_storage().data_ptr()
    assert int(state["model_ema.num_updates"]) == 7 and state["betas"].dtype == torch.float32
    unique = {v.untyped_storage().data_ptr(): v.untyped_storage().nbytes() for v in state.values()}
    assert path.stat().st_size < 1.1 * sum(unique.values())  # each shared tensor once
    loaded = ldm.load(REPO / "configs" / "tiny" / "inpainting.yaml", path)
    assert loaded.load_report.ema.startswith("used") and not loaded.load_report.warnings
    assert torch.equal(loaded.unet.out[2].weight, expected.float())


def _tiny_unet_inputs(model, family: str, scale: float = 1.0):
    torch.manual_seed(1)
    unet = model.unet
    latent, extra = unet.config.out_channels, unet.config.in_channels - unet.config.out_channels
    x = scale * torch.randn(2, latent, 8, 8)
    cond = {"context": torch.randn(2, 5, 32)} if family == "txt2img" else {"concat": scale * torch.randn(2, extra, 8, 8)}
    return x, cond


@pytest.mark.parametrize("family", ["inpainting", "superres", "txt2img"])
def test_output_path_is_built_into_the_architecture_and_bakes_to_plain_weights(train, family):
    from torch.nn.utils import parametrize

    torch.manual_seed(0)
    model = ldm.build_model(ldm.load_config(REPO / "configs" / "tiny" / f"{family}.yaml"))
    unet = model.unet
    assert train.pairs_fit(unet)
    context_mean = family == "inpainting"  # as training builds it
    train.build_output_path(unet, context_mean=context_mean)
    x, cond = _tiny_unet_inputs(model, family)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        before = model.apply_model(x, t, **cond)
        train.bake(unet)
        assert not any(parametrize.is_parametrized(m) for m in unet.modules())
        assert torch.equal(model.apply_model(x, t, **cond), before)
    k = train.PAIR_AMPLITUDE
    lin_in, lin_hidden = train.linear_channels(unet, context_mean=context_mean)
    first, last = unet.input_blocks[0][0].weight, unet.output_blocks[-1][0]
    for i, row in enumerate(lin_in[:unet.config.in_channels]):  # input i copied as (+k, -k), nothing else
        expected = torch.zeros_like(first[row])
        expected[i, 1, 1] = k
        assert torch.equal(first[row], expected) and torch.equal(first[row + 1], -expected)
    for w in (last.skip_connection.weight, last.out_layers[-1].weight, last.in_layers[-1].weight[lin_hidden[0]:]):
        assert torch.equal(w[1::2], -w[0::2])
    assert torch.equal(unet.out[-1].weight[:, 1::2], -unet.out[-1].weight[:, 0::2])
    scale_rows = last.emb_layers[-1].weight[lin_hidden[0]:last.in_layers[-1].out_channels]
    assert torch.equal(scale_rows[1::2], scale_rows[0::2])
    assert torch.equal(unet.out[0].weight, torch.ones_like(unet.out[0].weight)) and not unet.out[0].bias.any()


@pytest.mark.parametrize("family", ["inpainting", "superres", "txt2img"])
def test_linear_path_carries_the_inputs_means_to_eps_with_the_timestep_gain(train, family):
    """With every learned contribution to the last block's output silenced, eps is an affine function of
    (x_t, concat), its spatial mean included, scaled by the timestep's scale-shift gain (to 1e-3 for inputs of
    std 0.1: the norms' variance k^2 mean(a^2) is then ~1e-3 of their eps)."""
    torch.manual_seed(0)
    model = ldm.build_model(ldm.load_config(REPO / "configs" / "tiny" / f"{family}.yaml"))
    unet = model.unet
    context_mean = family == "inpainting"  # its pairs are silenced below with the other learned inputs
    train.build_output_path(unet, context_mean=context_mean)
    lin_in, lin_hidden = train.linear_channels(unet, context_mean=context_mean)
    last = unet.output_blocks[-1][0]
    offset = last.in_layers[0].num_channels - unet.input_blocks[0][0].out_channels
    with torch.no_grad():
        free = {name: p for name, p in unet.named_parameters()}
        prefix = f"output_blocks.{len(unet.output_blocks) - 1}."
        conv1 = free[prefix + "0.in_layers.2.parametrizations.weight.original"]
        conv1[lin_hidden[0]:, :offset + lin_in[0]] = 0  # the hidden pairs read only the input pairs
        conv2 = free[prefix + "0.out_layers.3.parametrizations.weight.original"]
        conv2[:, :lin_hidden[0]] = 0  # v reads only the hidden pairs
        for name in ("0.out_layers.3.parametrizations.bias.original", "0.skip_connection.parametrizations.weight.original",
                     "0.skip_connection.parametrizations.bias.original", "1.proj_out.parametrizations.weight.original",
                     "1.proj_out.parametrizations.bias.original"):
            if prefix + name in free:
                free[prefix + name].zero_()
        x, cond = _tiny_unet_inputs(model, family, scale=0.1)
        x2, cond2 = _tiny_unet_inputs(model, family, scale=0.1)
        x2 = x2.flip(-1) + 0.05  # another input, with a mean
        cond2 = {k: v.flip(-1) + 0.05 if k == "concat" else v for k, v in cond2.items()}
        t = torch.tensor([10, 900])

        def eps(a, c):
            return model.apply_model(a, t, **c)

        zero = eps(torch.zeros_like(x), {k: torch.zeros_like(v) if k == "concat" else v for k, v in cond.items()})
        summed = {k: cond[k] + cond2[k] if k == "concat" else v for k, v in cond.items()}
        combined = eps(x, cond) + eps(x2, cond2) - zero
        assert torch.allclose(eps(x + x2, summed), combined, rtol=1e-3, atol=1e-3 * combined.abs().max().item())
        hidden = last.in_layers[-1].out_channels
        emb_w = free[prefix + "0.emb_layers.1.parametrizations.weight.original"]
        emb_b = free[prefix + "0.emb_layers.1.parametrizations.bias.original"]
        emb_w[lin_hidden[0]:hidden] = 0  # the hidden pairs' scale: 1 + beta, whatever t
        shifts = []
        for beta in (0.0, 1.0):
            emb_b[lin_hidden[0]:hidden] = beta
            shifts.append((eps(x + 0.1, cond) - eps(x, cond)).mean((2, 3)))  # a mean in x_t moves eps's mean
        assert shifts[0].abs().max() > 1e-3
        assert torch.allclose(shifts[1], 2 * shifts[0], rtol=1e-3, atol=1e-3 * shifts[0].abs().max().item())


def test_context_mean_head_brings_the_contexts_mean_latent_into_the_hole(train):
    """Built as training builds it (random other weights), the inpainting UNet hands its last block, in the
    context-mean pairs, what the written attention head computes at the lowest resolution: for a hole query the
    mean of the masked image's latent over the known keys, for a known query the mean over the hole keys
    (zero there), carried through every block and upsampled nearest; to 1% (the pair norms' variance term)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = ldm.build_model(ldm.load_config(REPO / "configs" / "tiny" / "inpainting.yaml"))
    unet = model.unet
    train.build_output_path(unet, context_mean=True)
    torch.manual_seed(1)
    x = 0.1 * torch.randn(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, :4, :4] = 1
    mask[1, :, 4:, 2:6] = 1
    c = (0.1 * torch.randn(2, 3, 8, 8) + torch.tensor([0.05, -0.03, 0.02]).view(1, 3, 1, 1)) * (1 - mask)
    seen = {}
    hook = unet.output_blocks[-1].register_forward_pre_hook(lambda module, args: seen.__setitem__("h", args[0]))
    with torch.no_grad():
        eps = model.apply_model(x, torch.tensor([10, 900]), concat=torch.cat([c, mask], 1))
    hook.remove()
    assert torch.isfinite(eps).all()
    k, means = train.PAIR_AMPLITUDE, train.context_mean_channels(unet)
    got = torch.stack([(seen["h"][:, r] - seen["h"][:, r + 1]) / (2 * k) for r in means], 1)
    pooled_c, pooled_m = F.avg_pool2d(c, 2).flatten(2), F.avg_pool2d(mask, 2).flatten(1)
    logits = train.CONTEXT_LOGIT * pooled_m[:, None, :] * (1 - 2 * pooled_m[:, :, None])  # [b, query, key]
    expected = torch.einsum("bqk,bck->bcq", logits.softmax(-1), pooled_c).reshape(2, 3, 4, 4)
    expected = F.interpolate(expected, scale_factor=2, mode="nearest")
    context = (c * (1 - mask)).sum((2, 3)) / (1 - mask).sum((2, 3))
    assert torch.allclose(expected[0, :, 0, 0], context[0], rtol=1e-4)  # the hole's fill is the context mean
    assert expected[0, :, 7, 7].abs().max() < 1e-4  # a known query reads the (empty) hole
    assert (got - expected).abs().max() <= 1e-2 * expected.abs().max()


def test_context_mean_head_refuses_a_unet_without_the_inpainting_layout(train):
    import dataclasses

    from ldm.unet import UNetConfig, UNetModel

    model = ldm.build_model(ldm.load_config(REPO / "configs" / "tiny" / "superres.yaml"))
    with pytest.raises(ValueError, match="needs the inpainting inputs"):
        train.build_context_mean_head(model.unet)
    no_attention = UNetModel(dataclasses.replace(UNetConfig.tiny("inpainting"), attention_resolutions=()))
    with pytest.raises(ValueError, match="needs a self-attention layer"):
        train.build_context_mean_head(no_attention)


def test_p2_timestep_distribution_is_the_p2_weight_normalised(train):
    """P(t) = (1 + SNR_t)^-gamma / sum, SNR_t = abar_t / (1 - abar_t), from the model's own schedule (float64
    transcription); it grows with t, so the noisy steps are drawn more than under the uniform draw."""
    model = ldm.build_model(ldm.load_config(REPO / "configs" / "tiny" / "inpainting.yaml"))
    betas = np.linspace(0.0015 ** 0.5, 0.0205 ** 0.5, 1000, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)
    for gamma in (1.0, 2.0):
        weight = (1 + abar / (1 - abar)) ** -gamma
        probs = train.timestep_distribution(model, gamma).numpy()
        np.testing.assert_allclose(probs, weight / weight.sum(), rtol=1e-4)  # the model keeps abar in float32
        assert np.all(np.diff(probs) >= 0) and probs[600:].sum() > 0.5  # uniform: 0.4


def test_conditioning_banks_are_built_as_the_runners_build_them(train, photos):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    sr = ldm.build_model(ldm.load_config(REPO / "configs" / "tiny" / "superres.yaml"))
    cond = train.Conditioner(sr, "superres", photos, 32, gen, 0, bank=4)
    z0, kwargs = cond.batch(3)
    assert z0.shape == (3, 3, 8, 8) and kwargs["concat"].shape == (3, 3, 8, 8)
    # the LR channel is bicubic_downscale of the crop (what the demo data's LOW/ images are), in [-1, 1]
    gen = torch.Generator().manual_seed(0)
    crops = train.random_crops(photos, 4, 32, gen)
    from PIL import Image

    lr = bicubic_downscale(Image.fromarray((crops[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)), 4)
    expected = torch.from_numpy(np.asarray(lr, dtype=np.float32) / 255).permute(2, 0, 1) * 2 - 1
    assert torch.equal(cond.bank["concat"][0], expected)
    inp = ldm.build_model(ldm.load_config(REPO / "configs" / "tiny" / "inpainting.yaml"))
    bank = train.Conditioner(inp, "inpainting", photos, 32, torch.Generator().manual_seed(0), 0, bank=4).bank
    assert bank["concat"].shape == (4, 4, 8, 8) and set(bank["concat"][:, 3].unique().tolist()) <= {-1.0, 1.0}


def test_training_is_deterministic_and_the_result_loads(train, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    threads = torch.get_num_threads()
    try:
        for out in (a, b):
            assert train.main(["--family", "txt2img", "--steps-scale", "0.002", "--out", str(out), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)  # main() sets it for the process
    assert (a / "txt2img.ckpt").read_bytes() == (b / "txt2img.ckpt").read_bytes()
    record = json.loads((a / "demo_models.json").read_text())
    assert record["txt2img"]["checkpoint_sha256"] == ldm.file_sha256(a / "txt2img.ckpt")
    assert record["txt2img"]["diffusion_steps"] == 6 and record["txt2img"]["seed"] == 2
    assert record["txt2img"]["command"] == "scripts/train_demo_models.py --family txt2img --steps-scale 0.002 --threads 1"
    assert record["txt2img"]["threads"] == 1 and "threads" not in record  # per family: families may be trained apart
    model = ldm.load(REPO / "configs" / "tiny" / "txt2img.yaml", a / "txt2img.ckpt", tokenizer=REPO / "configs" / "tiny" / "vocab.txt")
    assert not model.load_report.warnings


# ----------------------------------------------------------------------------
# The committed trained checkpoints (models/demo/) and their record.


def test_committed_demo_models_match_their_record_and_load_strictly():
    models = demo_models()
    record = json.loads((DEMO_DIR / "demo_models.json").read_text())
    assert record["trained"] is True and set(models) == {"inpainting", "superres", "txt2img"}
    for family, (config, ckpt) in models.items():
        model = ldm.load(config, ckpt, tokenizer=config.parent / "vocab.txt" if family == "txt2img" else None)
        assert not model.load_report.warnings, family
        assert record[family]["diffusion_steps"] > 1000 and ckpt.stat().st_size < 8 * 2**20


def test_demo_models_refuses_missing_modified_or_stale_files(tmp_path, monkeypatch):
    import ldm_lab.demo_models as dm

    folder = tmp_path / "demo"
    shutil.copytree(DEMO_DIR, folder)
    assert demo_models(folder)["superres"][1] == folder / "superres.ckpt"
    (folder / "superres.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"superres\.ckpt.*git checkout"):
        demo_models(folder)
    shutil.copy(DEMO_DIR / "superres.ckpt", folder / "superres.ckpt")
    with open(folder / "txt2img.ckpt", "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match=r"txt2img\.ckpt is not the one recorded.*train_demo_models"):
        demo_models(folder)
    shutil.copy(DEMO_DIR / "txt2img.ckpt", folder / "txt2img.ckpt")
    configs = tmp_path / "configs"
    shutil.copytree(dm.CONFIG_DIR, configs)
    with open(configs / "inpainting.yaml", "a") as f:
        f.write("# edited\n")
    monkeypatch.setattr(dm, "CONFIG_DIR", configs)
    monkeypatch.setattr(dm, "PROJECT_ROOT", tmp_path)
    with pytest.raises(ValueError, match=r"inpainting\.yaml changed since the demo models were trained"):
        demo_models(folder)
    (folder / "demo_models.json").unlink()
    with pytest.raises(FileNotFoundError, match="demo model record not found"):
        demo_models(folder)
