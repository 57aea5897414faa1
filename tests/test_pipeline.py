"""End-to-end sampling on the tiny models: seeds, batch-size independence, guidance, decode."""

from __future__ import annotations

import pytest
import torch

from ldm.noise import make_generators, randn_per_image
from ldm.pipeline import decode_to_uint8, sample_latents


def _concat_cond(model, family: str, n: int, size: int = 16) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    if family == "superres":  # the LR image itself is the conditioning (Identity)
        return {"concat": model.get_learned_conditioning(torch.rand(n, 3, size, size, generator=gen) * 2 - 1)}
    image = torch.rand(n, 3, size * 4, size * 4, generator=gen) * 2 - 1
    mask = (torch.rand(n, 1, size * 4, size * 4, generator=gen) > 0.5).float() * 2 - 1  # ±1 as upstream
    c = model.get_learned_conditioning(image * (mask < 0))
    return {"concat": torch.cat([c, torch.nn.functional.interpolate(mask, size=c.shape[-2:])], dim=1)}


@pytest.mark.parametrize("family,sampler,eta", [("superres", "ddim", 1.0), ("inpainting", "ddim", 0.0),
                                                ("inpainting", "plms", 0.0), ("superres", "dpmpp2m", 0.0)])
def test_image_i_same_at_batch_size_1_and_3(tiny_models, family, sampler, eta):
    model = tiny_models[family]
    cond = _concat_cond(model, family, 3)
    seeds = [11, 12, 13]
    kw = {"shape": (3, 16, 16), "sampler": sampler, "steps": 4, "eta": eta}
    batch = sample_latents(model, seeds=seeds, cond=cond, **kw)
    singles = torch.cat([sample_latents(model, seeds=[s], cond={"concat": cond["concat"][i:i + 1]}, **kw)
                         for i, s in enumerate(seeds)])
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-4)
    again = sample_latents(model, seeds=seeds, cond=cond, **kw)
    assert torch.equal(batch, again)  # same seeds, same numbers
    other = sample_latents(model, seeds=[99, 12, 13], cond=cond, **kw)
    assert not torch.allclose(other[0], batch[0]) and torch.allclose(other[1:], batch[1:], atol=1e-5)


def test_initial_noise_is_the_per_image_seed(tiny_models):
    model = tiny_models["superres"]
    cond = _concat_cond(model, "superres", 2)
    x_T = randn_per_image(make_generators([5, 6]), (3, 16, 16))
    implicit = sample_latents(model, seeds=[5, 6], shape=(3, 16, 16), cond=cond, steps=4)
    explicit = sample_latents(model, seeds=[5, 6], shape=(3, 16, 16), cond=cond, steps=4, x_T=x_T)
    assert torch.equal(implicit, explicit)


def test_text_guidance_scale_one_equals_conditional_pass(tiny_models):
    model = tiny_models["txt2img"]
    c = model.get_learned_conditioning(["a red cat on the street", "a photo of a dog"])
    uc = model.get_learned_conditioning(["", ""])
    kw = {"seeds": [1, 2], "shape": (4, 8, 8), "steps": 4}
    plain = sample_latents(model, cond={"context": c}, **kw)
    scale1 = sample_latents(model, cond={"context": c}, uncond={"context": uc}, guidance_scale=1.0, **kw)
    guided = sample_latents(model, cond={"context": c}, uncond={"context": uc}, guidance_scale=7.5, **kw)
    assert torch.equal(plain, scale1)
    assert (guided - plain).abs().max() > 1e-3
    images = decode_to_uint8(model, guided)
    assert images.shape == (2, 64, 64, 3) and images.dtype == torch.uint8


def test_text_conditioning_uses_the_tokenizer(tiny_models):
    model = tiny_models["txt2img"]
    a, b = model.get_learned_conditioning(["a red cat", "a blue dog"])
    assert a.shape == (77, 32) and not torch.allclose(a, b)
    assert model.info["tokenizer_vocab"].endswith("configs/tiny/vocab.txt")


def test_sampler_argument_errors(tiny_models):
    model = tiny_models["superres"]
    cond = _concat_cond(model, "superres", 1)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        sample_latents(model, seeds=[0], shape=(3, 16, 16), cond=cond, sampler="euler")
    with pytest.raises(ValueError, match="`eta` must be 0 for sampler 'plms'"):
        sample_latents(model, seeds=[0], shape=(3, 16, 16), cond=cond, sampler="plms", eta=0.5)
    with pytest.raises(ValueError, match="pass `concat`"):
        sample_latents(model, seeds=[0], shape=(3, 16, 16), cond={}, steps=2)


def test_half_precision_weights_keep_float32_sampler_state(tiny_ckpts):
    import ldm

    config, ckpt, _ = tiny_ckpts["superres"]
    model = ldm.load(config, ckpt, dtype=torch.bfloat16)
    cond = _concat_cond(model, "superres", 1)
    z = sample_latents(model, seeds=[0], shape=(3, 16, 16), cond=cond, steps=2)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    assert decode_to_uint8(model, z).shape == (1, 64, 64, 3)
