"""ldm.optimize: channels_last and torch.compile of the UNet change layout and kernels, not the model."""

from __future__ import annotations

import pytest
import torch

import ldm


def fresh(tiny_ckpts, family: str) -> ldm.LatentDiffusion:
    config, ckpt, _ = tiny_ckpts[family]
    return ldm.load(config, ckpt)


def eps(model: ldm.LatentDiffusion) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    cfg = model.config
    x = torch.randn(2, cfg.unet.out_channels, 16, 16, generator=gen)
    concat = torch.randn(2, cfg.unet.in_channels - cfg.unet.out_channels, 16, 16, generator=gen)
    with torch.inference_mode():
        return model.apply_model(x, torch.tensor([10, 900]), concat=concat)


def test_channels_last_stores_conv_weights_nhwc_and_keeps_the_outputs(tiny_ckpts):
    plain, nhwc = fresh(tiny_ckpts, "superres"), ldm.optimize(fresh(tiny_ckpts, "superres"), channels_last=True)
    convs = [m.weight for net in (nhwc.unet, nhwc.first_stage_model) for m in net.modules()
             if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)
    assert nhwc.info["speed"] == {"channels_last": True, "compile_unet": None}
    torch.testing.assert_close(eps(nhwc), eps(plain), rtol=1e-5, atol=1e-5)
    assert plain.state_dict().keys() == nhwc.state_dict().keys()


def test_compile_is_in_place_and_keeps_parameter_names(tiny_ckpts):
    model = fresh(tiny_ckpts, "inpainting")
    keys = list(model.state_dict())
    ldm.optimize(model, compile_unet=True, compile_mode="max-autotune")
    assert list(model.state_dict()) == keys  # no `_orig_mod.` prefixes: the checkpoint names still apply
    assert model.unet._compiled_call_impl is not None  # compiled lazily, on the first call
    assert model.info["speed"] == {"channels_last": False, "compile_unet": "max-autotune"}


def test_bad_arguments_are_refused(tiny_ckpts):
    with pytest.raises(ValueError, match=r"`compile_mode` must be one of \['default', 'reduce-overhead', "):
        ldm.optimize(fresh(tiny_ckpts, "superres"), compile_unet=True, compile_mode="fastest")
    with pytest.raises(TypeError, match="`model` must be a LatentDiffusion, got Autoencoder"):
        ldm.optimize(fresh(tiny_ckpts, "superres").first_stage_model)
