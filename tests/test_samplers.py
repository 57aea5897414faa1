"""Parity and invariance tests for ldm.schedule and ldm.samplers (toy eps_fn, real linear schedules)."""

import math

import numpy as np
import pytest
import torch

from ldm.noise import make_generators, per_image_noise_sampler, randn_per_image
from ldm.samplers import (
    SAMPLERS,
    ddim_sample,
    ddim_timesteps,
    dpmpp_2m_sample,
    get_sampler,
    plms_sample,
)
from ldm.schedule import make_beta_schedule_linear, schedule_buffers

from .numerics import assert_close_ulps

CONFIGS = [(0.0015, 0.0205), (0.0015, 0.0155), (0.00085, 0.012)]  # inpainting, bsr_sr, txt2img
AC = schedule_buffers(make_beta_schedule_linear(0.00085, 0.012))["alphas_cumprod"]
W = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
# Two float32 DDIM trajectories of the same math through different code paths (ours vs the upstream
# transcription, a batch vs image by image) agree to rounding only: the CPU's SIMD/BLAS/VML code path
# (MKL picks one per CPU vendor and ISA) and the thread count move a last bit, and later steps carry it.
# Bound: 16 float32 ULPs of max |x| (about 4e-6 at |x| ~ 3; unit in tests/numerics.py). Measured: 0 on
# an Intel Xeon (AVX-512); 2.5 on the AMD EPYC report (6e-7); at most 4 under MKL_CBWR=COMPATIBLE or
# AVX2, ATEN_CPU_CAPABILITY=default/avx2/avx512, 1 or 2 threads; at most 11 with every element of x
# nudged by +-1 ULP after every step. Real bugs are far above: eps at t + 1 ~ 3e4 ULPs, an off-by-one
# alphas_cumprod index ~ 8e4, the last step to alpha_bar = 1 instead of alphas_cumprod[0] ~ 3e4, dir_xt
# without sigma^2 ~ 2e7, and even sqrt(alpha_bar_prev) off by a relative 1e-6 gives 57-80.
DDIM_FLOAT32_ULPS = 16


def toy_eps(x, t):
    """A fixed per-image eps model: the exact eps for N(0, I) data, sqrt(1 - alpha_bar) x, plus a nonlinear
    channel mixing and a timestep-dependent offset (so a wrong t or a swapped channel shows)."""
    assert t.dtype == torch.long and t.shape == (x.shape[0],) and t.device == x.device
    alpha_bar = AC.to(x.device, x.dtype)[t][:, None, None, None]
    mix = torch.einsum("oc,bchw->bohw", W.to(x.device, x.dtype), x)
    return (
        torch.sqrt(1 - alpha_bar) * x
        + 0.2 * torch.tanh(mix)
        + 0.05 * torch.sin(t.to(x.dtype) / 150)[:, None, None, None]
    )


def x_T(batch=2, seed=1):
    return torch.randn(batch, 4, 6, 6, generator=torch.Generator().manual_seed(seed))


def _steps_seen(sampler, **kwargs):
    seen = []
    sampler(toy_eps, x_T(), ddim_timesteps(10), AC, callback=seen.append, **kwargs)
    return seen


# ---- Schedule ---------------------------------------------------------------------------------------


def _register_schedule_reference(linear_start, linear_end):
    """Literal float64 numpy transcription of upstream DDPM.register_schedule (eps, v_posterior = 0)."""
    betas = (torch.linspace(linear_start**0.5, linear_end**0.5, 1000, dtype=torch.float64) ** 2).numpy()
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas, axis=0)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "log_one_minus_alphas_cumprod": np.log(1.0 - alphas_cumprod),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    }


@pytest.mark.parametrize("linear_start,linear_end", CONFIGS)
def test_schedule_buffers_match_register_schedule(linear_start, linear_end):
    ours = schedule_buffers(make_beta_schedule_linear(linear_start, linear_end))
    ref = _register_schedule_reference(linear_start, linear_end)
    assert list(ours) == list(ref)
    for name, value in ref.items():
        assert ours[name].dtype == torch.float32 and ours[name].shape == (1000,), name
        # float64 all the way, then one rounding to float32 (a float32 cumprod is off by ~1e-5). torch and
        # numpy float64 log/sqrt may differ in a last float64 bit, which can move the float32 rounding by one
        # ULP: rtol=1.2e-7 (just over 2**-23) allows one float32 ULP (two just below a power of two).
        torch.testing.assert_close(ours[name], torch.from_numpy(value).float(), rtol=1.2e-7, atol=0, msg=name)
    assert ours["alphas_cumprod_prev"][0] == 1 and ours["posterior_variance"][0] == 0


@pytest.mark.parametrize("linear_start,linear_end", CONFIGS)
def test_beta_schedule_is_float64_linear_in_sqrt_beta(linear_start, linear_end):
    betas = make_beta_schedule_linear(linear_start, linear_end)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    expected = np.linspace(math.sqrt(linear_start), math.sqrt(linear_end), 1000) ** 2
    np.testing.assert_allclose(betas.numpy(), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("args", [(0.0, 0.01), (0.02, 0.01), (0.001, 1.0), (0.001, 0.01, 0)])
def test_beta_schedule_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="linear_start|timesteps"):
        make_beta_schedule_linear(*args)


def test_schedule_buffers_rejects_bad_betas():
    with pytest.raises(ValueError, match="betas_f64"):
        schedule_buffers(torch.zeros(10, dtype=torch.float64))
    with pytest.raises(ValueError, match="betas_f64"):
        schedule_buffers(torch.full((2, 5), 0.01, dtype=torch.float64))


# ---- Timesteps --------------------------------------------------------------------------------------


def test_ddim_timesteps_uniform():
    ts = ddim_timesteps(50)
    assert ts.dtype == torch.long and ts.tolist() == list(range(1, 1000, 20))
    assert ts[0] == 1 and ts[-1] == 981 and len(ts) == 50
    assert ddim_timesteps(1).tolist() == [1]
    assert ddim_timesteps(250).tolist() == list(range(1, 1000, 4))
    assert ddim_timesteps(20, num_train_timesteps=100).tolist() == list(range(1, 100, 5))


def test_ddim_timesteps_uneven_steps_follow_upstream():
    # c = 1000 // 7 = 142 and range(0, 1000, 142) has 8 entries: upstream keeps all of them.
    assert ddim_timesteps(7).tolist() == [1, 143, 285, 427, 569, 711, 853, 995]
    assert ddim_timesteps(200).tolist() == list(range(1, 1000, 5))
    assert len(ddim_timesteps(30)) == 31  # c = 33


@pytest.mark.parametrize("steps", [0, -1, 1001, 3, 9, 27, 333, 1000, 2.5, True, "50"])
def test_ddim_timesteps_rejects_bad_steps(steps):
    # 3, 9, 27, 333 and 1000 would give timestep 1000, past the end of alphas_cumprod.
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(steps)


# ---- DDIM -------------------------------------------------------------------------------------------


def ddim_reference(eps_fn, x, timesteps, alphas_cumprod, eta, noises=()):
    """DDIM eq. (12) of Song et al. (2021) in float64, sigma from eq. (16), one step per timestep."""
    x, ac, ts, noises = x.double(), alphas_cumprod.double(), timesteps.tolist(), list(noises)
    for k in reversed(range(len(ts))):
        a_t = ac[ts[k]]
        a_prev = ac[ts[k - 1]] if k > 0 else ac[0]
        sigma = eta * torch.sqrt((1 - a_prev) / (1 - a_t)) * torch.sqrt(1 - a_t / a_prev)
        eps = eps_fn(x, torch.full((x.shape[0],), ts[k]))
        pred_x0 = (x - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)
        x = torch.sqrt(a_prev) * pred_x0 + torch.sqrt(1 - a_prev - sigma**2) * eps
        if eta > 0:
            x = x + sigma * noises.pop(0).double()
    return x


def test_ddim_one_step_matches_eq12():
    noise = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    seen = []
    ddim_sample(
        toy_eps, x_T(), ddim_timesteps(50), AC, eta=0.5, noise_sampler=lambda x: noise, callback=seen.append
    )
    # First step 981 -> 961, written out in float64 (Song et al. 2021, eqs. 12 and 16).
    x, a_t, a_prev = x_T().double(), AC.double()[981], AC.double()[961]
    sigma = 0.5 * torch.sqrt((1 - a_prev) / (1 - a_t)) * torch.sqrt(1 - a_t / a_prev)
    eps = toy_eps(x, torch.full((2,), 981))
    pred_x0 = (x - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)
    x_prev = torch.sqrt(a_prev) * pred_x0 + torch.sqrt(1 - a_prev - sigma**2) * eps + sigma * noise.double()
    assert seen[0]["t"] == 981 and seen[0]["i"] == 0
    # float32 cancellation in x - sqrt(1 - a_t) eps, divided by sqrt(a_t) = 0.07, costs ~1e-6 absolute here
    torch.testing.assert_close(seen[0]["pred_x0"].double(), pred_x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen[0]["x"].double(), x_prev, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("eta", [0.0, 1.0, 0.5])
def test_ddim_trajectory_matches_eq12_reference(eta):
    ts = ddim_timesteps(20)
    noises = [torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(100 + k)) for k in range(20)]
    queue = list(noises)
    ours = ddim_sample(toy_eps, x_T(), ts, AC, eta=eta, noise_sampler=lambda x: queue.pop(0))
    ref = ddim_reference(toy_eps, x_T(), ts, AC, eta, noises)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    assert len(queue) == (20 if eta == 0 else 0)  # one draw per step, none at eta 0
    if eta > 0:  # the noise really enters: a different sequence gives a different result
        other = ddim_reference(toy_eps, x_T(), ts, AC, eta, noises[::-1])
        assert (other - ref).abs().max() > 1e-2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("steps,eta", [(20, 1.0), (7, 0.0)])
def test_ddim_matches_upstream_float32_arithmetic_within_ulps(steps, eta):
    """Upstream's dtypes: float32 alphas, alphas_prev via numpy float64, sigma computed in a numpy/torch mix,
    each scalar broadcast with torch.full as float32; x_prev = sqrt(a_prev) pred_x0 + dir_xt + noise."""
    ts = ddim_timesteps(steps).numpy()
    alphas = AC[ts]
    alphas_prev = np.asarray([AC[0]] + AC[ts[:-1]].tolist())
    sigmas = eta * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    sqrt_one_minus = np.sqrt(1.0 - alphas)
    gen, x, b = torch.Generator().manual_seed(7), x_T(), 2
    for i, step in enumerate(np.flip(ts)):
        index = len(ts) - i - 1

        def full(v):
            return torch.full((b, 1, 1, 1), v)

        e_t = toy_eps(x, torch.full((b,), int(step), dtype=torch.long))
        pred_x0 = (x - full(sqrt_one_minus[index]) * e_t) / full(alphas[index]).sqrt()
        dir_xt = (1.0 - full(alphas_prev[index]) - full(sigmas[index]) ** 2).sqrt() * e_t
        noise = full(sigmas[index]) * torch.randn(x.shape, generator=gen) * 1.0
        x = full(alphas_prev[index]).sqrt() * pred_x0 + dir_xt + noise
    gen2 = torch.Generator().manual_seed(7)
    ours = ddim_sample(
        toy_eps,
        x_T(),
        torch.from_numpy(ts),
        AC,
        eta=eta,
        noise_sampler=lambda x: torch.randn(x.shape, generator=gen2),
    )
    assert ours.dtype == x.dtype == torch.float32
    assert_close_ulps(ours, x, DDIM_FLOAT32_ULPS)


def test_ddim_eta0_is_deterministic_and_never_draws_noise():
    def forbidden(x):
        raise AssertionError("noise sampler called at eta 0")

    ts = ddim_timesteps(10)
    state = torch.get_rng_state()
    a = ddim_sample(toy_eps, x_T(), ts, AC, eta=0.0, noise_sampler=forbidden)
    b = ddim_sample(toy_eps, x_T(), ts, AC)  # default sampler: must not touch the global RNG either
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(a, x_T())


def test_ddim_eta1_is_batch_size_independent_with_per_image_generators():
    seeds, ts, shape = [10, 11, 12, 13], ddim_timesteps(10), (4, 6, 6)

    def run(seed_list):
        gens = make_generators(seed_list)
        x = randn_per_image(gens, shape)
        return ddim_sample(toy_eps, x, ts, AC, eta=1.0, noise_sampler=per_image_noise_sampler(gens))

    batch = run(seeds)
    singles = torch.cat([run([s]) for s in seeds])
    # toy_eps (einsum, tanh, sin) on 4 images vs 1 runs other kernels / SIMD tails: rounding apart
    assert_close_ulps(batch, singles, DDIM_FLOAT32_ULPS)
    deterministic = ddim_sample(toy_eps, randn_per_image(make_generators(seeds), shape), ts, AC)
    assert (batch - deterministic).abs().max() > 1e-2  # the per-image noise is really used
    assert (batch[0] - batch[1]).abs().max() > 1e-2


# ---- PLMS -------------------------------------------------------------------------------------------


def plms_reference(eps_fn, x, timesteps, alphas_cumprod):
    """PNDM's pseudo linear multistep in float64: improved-Euler start, then Adams-Bashforth 2/3/4."""
    x, ac = x.double(), alphas_cumprod.double()
    seq = timesteps.tolist()[::-1]  # descending
    history = []  # every eps evaluated at the step's own timestep
    for i, t in enumerate(seq):
        a_t, a_prev = ac[t], (ac[seq[i + 1]] if i + 1 < len(seq) else ac[0])

        def transfer(x, e, a_t=a_t, a_prev=a_prev):  # DDIM eta 0 = PNDM eq. (9)
            return (
                torch.sqrt(a_prev) * (x - torch.sqrt(1 - a_t) * e) / torch.sqrt(a_t)
                + torch.sqrt(1 - a_prev) * e
            )

        def eps_at(y, s):
            return eps_fn(y, torch.full((y.shape[0],), s))

        e = eps_at(x, t)
        n = len(history)
        if n == 0:
            e_prime = 0.5 * (e + eps_at(transfer(x, e), seq[min(i + 1, len(seq) - 1)]))
        elif n == 1:
            e_prime = 1.5 * e - 0.5 * history[-1]
        elif n == 2:
            e_prime = (23 * e - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            e_prime = (55 * e - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        x = transfer(x, e_prime)
        history.append(e)
    return x


@pytest.mark.parametrize("steps", [1, 2, 10])
def test_plms_matches_reference_loop(steps):
    ts = ddim_timesteps(steps)
    calls = []

    def counting_eps(x, t):
        calls.append(int(t[0]))
        return toy_eps(x, t)

    ours = plms_sample(counting_eps, x_T(), ts, AC)
    torch.testing.assert_close(ours.double(), plms_reference(toy_eps, x_T(), ts, AC), rtol=1e-5, atol=1e-5)
    # one extra call on the first step, at the next timestep (the same one when there is a single step)
    descending = ts.tolist()[::-1]
    assert calls == [descending[0], descending[min(1, steps - 1)], *descending[1:]]


def test_plms_differs_from_ddim():
    # guards against PLMS silently degenerating to DDIM (eta 0)
    ts = ddim_timesteps(10)
    assert (plms_sample(toy_eps, x_T(), ts, AC) - ddim_sample(toy_eps, x_T(), ts, AC)).abs().max() > 1e-3


# ---- DPM-Solver++(2M) -------------------------------------------------------------------------------


def dpmpp_2m_reference(eps_fn, x, timesteps, alphas_cumprod):
    """Lu et al. (2022), Algorithm 2 in float64: x0-prediction multistep, 1st order on the first step."""
    x, ac = x.double(), alphas_cumprod.double()
    seq = timesteps.tolist()[::-1]
    alpha_bars = [ac[t] for t in seq] + [ac[0]]
    alpha = [torch.sqrt(a) for a in alpha_bars]
    sigma = [torch.sqrt(1 - a) for a in alpha_bars]
    lam = [torch.log(al / si) for al, si in zip(alpha, sigma, strict=True)]
    previous = None
    for i, t in enumerate(seq):
        x0 = (x - sigma[i] * eps_fn(x, torch.full((x.shape[0],), t))) / alpha[i]
        h = lam[i + 1] - lam[i]
        if previous is None:
            d = x0
        else:
            r = (lam[i] - lam[i - 1]) / h
            d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * previous
        x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * (torch.exp(-h) - 1) * d
        previous = x0
    return x


@pytest.mark.parametrize("steps", [1, 2, 10])
def test_dpmpp_2m_matches_reference(steps):
    ts = ddim_timesteps(steps)
    ours = dpmpp_2m_sample(toy_eps, x_T(), ts, AC)
    torch.testing.assert_close(
        ours.double(), dpmpp_2m_reference(toy_eps, x_T(), ts, AC), rtol=1e-5, atol=1e-5
    )


def test_dpmpp_2m_first_step_is_ddim():
    ts = ddim_timesteps(10)
    dpm, ddim = [], []
    dpmpp_2m_sample(toy_eps, x_T(), ts, AC, callback=dpm.append)
    ddim_sample(toy_eps, x_T(), ts, AC, callback=ddim.append)
    torch.testing.assert_close(dpm[0]["x"], ddim[0]["x"], rtol=1e-5, atol=1e-5)
    assert (dpm[1]["x"] - ddim[1]["x"]).abs().max() > 1e-4  # second order from step 1 on


def test_samplers_converge_to_exact_ode_solution_for_gaussian_data():
    """For x0 ~ N(mu, s2 I) the optimal eps is linear and the probability-flow ODE keeps
    z = (x - sqrt(a) mu) / sqrt(a s2 + 1 - a) fixed, so the exact solution is known in closed form."""
    mu, s2, ac = 0.7, 0.5, AC.double()

    def gaussian_eps(x, t):
        a = ac[t][:, None, None, None]
        return torch.sqrt(1 - a) * (x - torch.sqrt(a) * mu) / (a * s2 + 1 - a)

    def exact(x, a_start, a_end):
        z = (x - a_start.sqrt() * mu) / (a_start * s2 + 1 - a_start).sqrt()
        return a_end.sqrt() * mu + (a_end * s2 + 1 - a_end).sqrt() * z

    x = x_T().double()

    def run(sampler, every):  # timesteps 1, 1 + every, ..., 981
        seen = []
        out = sampler(gaussian_eps, x, torch.arange(1, 982, every), AC, callback=seen.append)
        # error at t = 1 (before the fixed-size last step to alphas_cumprod[0]) and at the end
        return (seen[-2]["x"] - exact(x, ac[981], ac[1])).abs().max(), (
            out - exact(x, ac[981], ac[0])
        ).abs().max()

    ddim_fine, ddim_end = run(ddim_sample, 1)
    dpm_fine, dpm_end = run(dpmpp_2m_sample, 1)
    assert ddim_end < 1e-2 and dpm_end < 1e-3  # both converge to the exact endpoint
    assert 1.7 < run(ddim_sample, 2)[0] / ddim_fine < 2.3  # DDIM: first order
    assert 3.3 < run(dpmpp_2m_sample, 2)[0] / dpm_fine < 4.7  # DPM-Solver++(2M): second order
    assert dpm_fine < ddim_fine / 10


# ---- Common contract --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_first_call_and_callbacks(name):
    sampler = get_sampler(name)
    ts = ddim_timesteps(10)
    calls = []

    def recording_eps(x, t):
        calls.append(t.clone())
        return toy_eps(x, t)

    seen = []
    out = sampler(recording_eps, x_T(batch=3), ts, AC, callback=seen.append)
    assert calls[0].dtype == torch.long and calls[0].tolist() == [int(ts[-1])] * 3 == [901] * 3
    assert len(seen) == len(ts)
    assert [d["i"] for d in seen] == list(range(len(ts)))
    assert [d["t"] for d in seen] == ts.tolist()[::-1]
    assert set(seen[0]) == {"i", "t", "x", "pred_x0"}
    assert torch.equal(seen[-1]["x"], out) and out.shape == (3, 4, 6, 6)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_run_on_meta_device_without_host_syncs(name):
    # A meta tensor has no data: any .item(), bool() or .tolist() on a device tensor inside the loop fails.
    x = torch.empty(2, 4, 6, 6, device="meta")
    kwargs = (
        {"eta": 1.0, "noise_sampler": per_image_noise_sampler(make_generators([0, 1]))}
        if name == "ddim"
        else {}
    )
    out = get_sampler(name)(toy_eps, x, ddim_timesteps(10), AC, **kwargs)
    assert out.device.type == "meta" and out.shape == x.shape and out.dtype == x.dtype


def test_get_sampler():
    assert get_sampler("ddim") is ddim_sample and get_sampler("plms") is plms_sample
    assert get_sampler("dpmpp2m") is dpmpp_2m_sample
    with pytest.raises(
        ValueError, match=r"unknown sampler 'euler'; choose from \['ddim', 'dpmpp2m', 'plms'\]"
    ):
        get_sampler("euler")


@pytest.mark.parametrize(
    "timesteps,match",
    [
        (torch.tensor([21, 1]), "ascending"),
        (torch.tensor([1, 1, 21]), "ascending"),
        (torch.tensor([1, 1000]), "within"),
        (torch.tensor([-1, 5]), "within"),
        (torch.tensor([1.0, 21.0]), "integer"),
        (torch.tensor([], dtype=torch.long), "non-empty"),
    ],
)
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_reject_bad_timesteps(name, timesteps, match):
    with pytest.raises(ValueError, match=match):
        get_sampler(name)(toy_eps, x_T(), timesteps, AC)


def test_ddim_rejects_bad_eta_and_inputs():
    for eta in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eta"):
            ddim_sample(toy_eps, x_T(), ddim_timesteps(10), AC, eta=eta)
    with pytest.raises(ValueError, match="`x`"):
        ddim_sample(toy_eps, torch.zeros(2, 4, 6, 6, dtype=torch.long), ddim_timesteps(10), AC)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        ddim_sample(toy_eps, x_T(), ddim_timesteps(10), AC - 1)
