"""Tests for ldm.guidance (classifier-free guidance) and ldm.noise (per-image seeds)."""

import pytest
import torch

from ldm.guidance import cfg_eps_fn
from ldm.noise import make_generators, parse_seeds, per_image_noise_sampler, randn_per_image

# ---- Guidance ---------------------------------------------------------------------------------------


class RecordingModel:
    """A per-sample eps model eps(x, t, context, c_concat) that records the batch of every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, *, context, c_concat):
        self.calls.append({"x": x, "t": t, "context": context, "c_concat": c_concat})
        return (
            torch.tanh(x * context.mean(dim=(1, 2))[:, None, None, None])
            + c_concat
            + 0.01 * t[:, None, None, None]
        )


def _inputs(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 5, 5, generator=g)
    t = torch.full((batch,), 981, dtype=torch.long)
    cond = {
        "context": torch.randn(batch, 7, 8, generator=g),
        "c_concat": torch.randn(batch, 4, 5, 5, generator=g),
    }
    uncond = {
        "context": torch.randn(batch, 7, 8, generator=g),
        "c_concat": torch.randn(batch, 4, 5, 5, generator=g),
    }
    return x, t, cond, uncond


@pytest.mark.parametrize("use_uncond,scale", [(True, 1.0), (False, 7.5)])
def test_cfg_conditional_only_makes_one_call_of_batch_b(use_uncond, scale):
    x, t, cond, uncond = _inputs()
    model = RecordingModel()
    out = cfg_eps_fn(model, cond, uncond if use_uncond else None, scale)(x, t)
    assert len(model.calls) == 1 and model.calls[0]["x"].shape[0] == 3
    assert torch.equal(out, RecordingModel()(x, t, **cond))


@pytest.mark.parametrize("scale", [7.5, 0.0, 3])
def test_cfg_makes_one_batched_call_and_mixes(scale):
    x, t, cond, uncond = _inputs()
    model = RecordingModel()
    out = cfg_eps_fn(model, cond, uncond, scale)(x, t)
    assert len(model.calls) == 1
    call = model.calls[0]
    assert torch.equal(call["x"], torch.cat([x, x])) and torch.equal(call["t"], torch.cat([t, t]))
    for k in cond:  # upstream order: unconditional first
        assert torch.equal(call[k], torch.cat([uncond[k], cond[k]]))
    e_uc, e_c = RecordingModel()(x, t, **uncond), RecordingModel()(x, t, **cond)
    torch.testing.assert_close(out, e_uc + scale * (e_c - e_uc), rtol=1e-6, atol=1e-6)
    assert (e_c - e_uc).abs().max() > 0.1  # the two passes really differ, so a swap would show


def test_cfg_rejects_mismatched_conditioning():
    _, _, cond, uncond = _inputs()
    with pytest.raises(ValueError, match="keys of `cond`"):
        cfg_eps_fn(RecordingModel(), cond, {"context": uncond["context"]}, 7.5)
    with pytest.raises(ValueError, match="keys of `cond`"):
        cfg_eps_fn(RecordingModel(), cond, {**uncond, "y": uncond["context"]}, 7.5)
    with pytest.raises(ValueError, match=r"`uncond\['context'\]` must match"):
        cfg_eps_fn(RecordingModel(), cond, {**uncond, "context": uncond["context"][:, :5]}, 7.5)
    with pytest.raises(ValueError, match="scale"):
        cfg_eps_fn(RecordingModel(), cond, uncond, float("nan"))
    with pytest.raises(ValueError, match="cond"):
        cfg_eps_fn(RecordingModel(), [cond["context"]], None, 1.0)


# ---- Noise ------------------------------------------------------------------------------------------


def test_randn_per_image_rows_come_from_their_own_seed():
    seeds, shape = [5, 0, 42], (4, 8, 8)
    noise = randn_per_image(make_generators(seeds), shape)
    assert noise.shape == (3, *shape) and noise.dtype == torch.float32
    for b, seed in enumerate(seeds):
        assert torch.equal(noise[b], torch.randn(shape, generator=torch.Generator().manual_seed(seed)))
    # dtype only casts the float32 draw
    as64 = randn_per_image(make_generators(seeds), shape, dtype=torch.float64)
    assert as64.dtype == torch.float64 and torch.equal(as64, noise.double())


def test_per_image_noise_sampler_is_batch_size_independent_and_advances():
    x = torch.zeros(3, 2, 4, 4, dtype=torch.float64)
    sampler = per_image_noise_sampler(make_generators([7, 8, 9]))
    first, second = sampler(x), sampler(x)
    assert first.shape == x.shape and first.dtype == x.dtype and first.device == x.device
    assert not torch.equal(first, second)
    for b, seed in enumerate([7, 8, 9]):
        alone = per_image_noise_sampler(make_generators([seed]))
        assert torch.equal(alone(x[:1])[0], first[b]) and torch.equal(alone(x[:1])[0], second[b])
    with pytest.raises(ValueError, match="one per image"):
        sampler(torch.zeros(2, 2, 4, 4))


@pytest.mark.parametrize("seeds", [[], [-1], [True], ["3"], "12", [2**64]])
def test_make_generators_rejects_bad_seeds(seeds):
    with pytest.raises(ValueError, match="seeds"):
        make_generators(seeds)


def test_randn_per_image_rejects_bad_arguments():
    with pytest.raises(ValueError, match="generators"):
        randn_per_image([], (4, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        randn_per_image(make_generators([0]), (4, 0, 8))


@pytest.mark.parametrize(
    "spec,n,expected",
    [
        ("0-63", None, list(range(64))),
        ("0-3", 4, [0, 1, 2, 3]),
        ("1,5,7", None, [1, 5, 7]),
        (" 0-2, 10 ", None, [0, 1, 2, 10]),
        ("4-4", None, [4]),
        (42, None, [42]),
        (42, 4, [42, 43, 44, 45]),
        ("42", 3, [42, 43, 44]),
        ([3, 1, 2], None, [3, 1, 2]),
        ((9,), 1, [9]),
    ],
)
def test_parse_seeds(spec, n, expected):
    assert parse_seeds(spec, n) == expected


@pytest.mark.parametrize(
    "spec,n,match",
    [
        ("5-3", None, "descending"),
        ("a", None, "cannot parse"),
        ("", None, "cannot parse"),
        ("1,,2", None, "cannot parse"),
        ("-1", None, "cannot parse"),
        ("1,1", None, "repeats seeds"),
        ("0-3", 5, "gives 4 seeds"),
        ([1, 2], 3, "gives 2 seeds"),
        ([], None, "no seeds"),
        (-1, None, "spec"),
        (True, None, "spec"),
        (1.5, None, "spec"),
        (0, 0, "`n`"),
        (2**64 - 1, 2, "spec"),
    ],
)
def test_parse_seeds_errors(spec, n, match):
    with pytest.raises(ValueError, match=match):
        parse_seeds(spec, n)
