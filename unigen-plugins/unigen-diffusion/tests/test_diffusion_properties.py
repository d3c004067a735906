"""The mathematics of the diffusion family: schedules, forward marginals, DDPM/DDIM steps, SDE marginals,
the discretized decoder and the probability-flow likelihood."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import unigen
from unigen_diffusion import steps as S
from unigen_diffusion.likelihood import discretized_gaussian_logp
from unigen_diffusion.schedules import SCHEDULES, SPACINGS, schedule, timesteps
from unigen_diffusion.sde import VESDE, VPSDE

torch.set_num_threads(1)  # as tests/conftest.py does, also when this folder runs alone
schedules = st.sampled_from(sorted(SCHEDULES))
few = settings(max_examples=8, deadline=None)
some = settings(max_examples=25, deadline=None)


@some
@given(T=st.integers(2, 2000), name=schedules)
def test_alpha_bar_is_strictly_decreasing_inside_0_1(T, name):
    ab = schedule(name, T)["alpha_bar"]
    assert ab[0] == 1.0 and ab.dtype == torch.float64
    for table in (ab[1:], ab[1:].float()):  # the float64 schedule and the float32 buffer cast from it
        assert (table > 0).all() and (table < 1).all()
        assert (table[1:] < table[:-1]).all()


@few
@given(T=st.integers(2, 60), name=schedules, seed=st.integers(0, 100))
def test_closed_form_marginal_matches_iterating_the_one_step_kernel(T, name, seed):
    tab = schedule(name, T)
    g = torch.Generator().manual_seed(seed)
    x0, n_samples = 0.7, 40_000
    x = torch.full((n_samples,), x0, dtype=torch.float64)
    for n in range(1, T + 1):  # q(x_n | x_{n-1}) = N(sqrt(1 - beta_n) x_{n-1}, beta_n)
        x = tab["alphas"][n].sqrt() * x + tab["betas"][n].sqrt() * torch.randn(n_samples, generator=g, dtype=torch.float64)
        if n in (1, T // 2 + 1, T):
            a = tab["alpha_bar"][n]
            mean, var = a.sqrt() * x0, 1 - a
            assert abs(x.mean() - mean) < 5 * math.sqrt(var / n_samples) + 1e-9
            # var of a sample variance of a Gaussian: 2 var^2 / N
            assert abs(x.var() - var) < 5 * math.sqrt(2 / n_samples) * var + 1e-9


@some
@given(T=st.integers(2, 1000), name=schedules, data=st.data())
def test_ddim_with_eta_1_is_the_ddpm_posterior(T, name, data):
    tab = schedule(name, T)
    n = data.draw(st.integers(2, T))
    d = S.ddim_coefs(tab, n, n - 1, eta=1.0)
    a = S.ancestral_coefs(tab, n)
    assert d.sigma**2 == pytest.approx(tab["posterior_var"][n].item(), rel=1e-9, abs=1e-15)
    assert d.sigma == pytest.approx(a.sigma, rel=1e-9, abs=1e-15)
    # and the whole update (mean + same noise) is the ancestral one
    g = torch.Generator().manual_seed(n)
    x, eps = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    outs = []
    for step, c in ((S.ddim_step_, d), (S.ancestral_step_, a)):
        xi = x.clone()
        step(xi, eps, torch.empty_like(x), torch.empty_like(x), c, generator=torch.Generator().manual_seed(1))
        outs.append(xi)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-7, atol=1e-7)


@some
@given(T=st.integers(2, 1000), name=schedules, data=st.data())
def test_ddim_step_with_the_exact_eps_lands_on_the_trajectory(T, name, data):
    tab = schedule(name, T)
    n = data.draw(st.integers(1, T))
    m = data.draw(st.integers(0, n - 1))
    g = torch.Generator().manual_seed(n * 7 + m)
    x0, eps = torch.randn(5, 2, 3, generator=g, dtype=torch.float64), torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    a, a_m = tab["alpha_bar"][n], tab["alpha_bar"][m]
    x = a.sqrt() * x0 + (1 - a).sqrt() * eps
    S.ddim_step_(x, eps, torch.empty_like(x), torch.empty_like(x), S.ddim_coefs(tab, n, m, eta=0.0))
    torch.testing.assert_close(x, a_m.sqrt() * x0 + (1 - a_m).sqrt() * eps, rtol=1e-6, atol=1e-6)
    if m == 0:  # reconstructs x_0
        torch.testing.assert_close(x, x0, rtol=1e-6, atol=1e-6)


@some
@given(T=st.integers(2, 1000), name=schedules, eta=st.floats(0, 1), data=st.data())
def test_in_place_steps_equal_the_textbook_formulas_and_allocate_nothing(T, name, eta, data):
    tab = schedule(name, T)
    n = data.draw(st.integers(1, T))
    m = data.draw(st.integers(0, n - 1))
    g = torch.Generator().manual_seed(n)
    x, eps = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    a, a_m = tab["alpha_bar"][n].item(), tab["alpha_bar"][m].item()
    beta, alpha = tab["betas"][n].item(), tab["alphas"][n].item()
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    # Ho et al. 2020, Algorithm 2 (sigma_n^2 = beta_tilde_n, no noise at n = 1)
    sigma = math.sqrt(tab["posterior_var"][n].item()) if n > 1 else 0.0
    ho = (x - beta / math.sqrt(1 - a) * eps) / math.sqrt(alpha) + sigma * z
    # Song et al. 2021a, Eq. 12
    s = eta * math.sqrt((1 - a_m) / (1 - a) * (1 - a / a_m))
    song = math.sqrt(a_m) * (x - math.sqrt(1 - a) * eps) / math.sqrt(a) + math.sqrt(max(1 - a_m - s * s, 0)) * eps + s * z
    for step, c, want in ((S.ancestral_step_, S.ancestral_coefs(tab, n), ho),
                          (S.ddim_step_, S.ddim_coefs(tab, n, m, eta), song)):
        xi, x0, noise = x.clone(), torch.empty_like(x), torch.empty_like(x)
        ptrs = (xi.data_ptr(), x0.data_ptr(), noise.data_ptr())
        out = step(xi, eps, x0, noise, c, generator=torch.Generator().manual_seed(9))
        assert out is xi and (xi.data_ptr(), x0.data_ptr(), noise.data_ptr()) == ptrs
        torch.testing.assert_close(xi, want, rtol=2e-4, atol=2e-4)


def test_steps_allocate_no_tensor_memory():
    tab = schedule("linear", 1000)
    x, eps = torch.randn(64, 1, 8, 8), torch.randn(64, 1, 8, 8)
    x0, noise = torch.empty_like(x), torch.empty_like(x)
    c1, c2 = S.ancestral_coefs(tab, 500), S.ddim_coefs(tab, 500, 480, 0.5)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        S.ancestral_step_(x, eps, x0, noise, c1, clip=True)
        S.ddim_step_(x, eps, x0, noise, c2, clip=True)
    # Only 0-d wrappers of the Python-float coefficients (a few bytes each); a temporary of x's size is 16 KiB.
    allocated = sum(max(e.self_cpu_memory_usage, 0) for e in prof.key_averages())
    assert allocated < 256, prof.key_averages().table(sort_by="self_cpu_memory_usage")


@some
@given(T=st.integers(1, 1200), data=st.data(), spacing=st.sampled_from(sorted(SPACINGS)))
def test_ddim_timesteps_chain_within_their_own_spacing(T, data, spacing):
    n = data.draw(st.integers(1, T))
    pairs = timesteps(T, n, spacing)
    taus = [p[0] for p in pairs]
    assert len(pairs) == n and all(1 <= t <= T for t in taus)
    assert all(a > b for a, b in zip(taus, taus[1:]))
    assert [p[1] for p in pairs] == taus[1:] + [0]  # the previous timestep is the next one of the list
    if spacing == "trailing":
        assert taus[0] == T


def test_trailing_spacing_is_not_t_minus_T_div_n():
    # diffusers #12633: 1000 steps, 30 sampling steps; T // n = 33 but trailing steps differ by 33 or 34
    pairs = timesteps(1000, 30, "trailing")
    assert any(t - p != 1000 // 30 for t, p in pairs)
    assert pairs[0][0] == 1000 and pairs[-1] == (33, 0)


@pytest.mark.parametrize("sde,x0", [(VPSDE(0.1, 20.0), 1.5), (VESDE(0.01, 5.0), 0.5)])
def test_sde_marginals_match_simulation(sde, x0):
    g = torch.Generator().manual_seed(0)
    n, steps, checks = 10_000, 1000, {100: 0.1, 500: 0.5, 1000: 1.0}
    x = torch.full((n,), x0, dtype=torch.float64)
    dt = 1.0 / steps
    for i in range(steps):  # Euler-Maruyama of the forward SDE dx = f dt + g dW from x(0) = x0
        t = torch.tensor(i * dt, dtype=torch.float64)
        x = x + sde.drift_coef(t) * x * dt + sde.diffusion(t) * math.sqrt(dt) * torch.randn(n, generator=g, dtype=torch.float64)
        if i + 1 in checks:
            m, std = sde.marginal(torch.tensor(checks[i + 1], dtype=torch.float64))
            assert abs(x.mean() - m * x0) < 5 * std / math.sqrt(n) + 5e-3 * abs(x0)
            assert abs(x.std() / std - 1) < 0.04  # 5 standard errors of a sample std, plus Euler's bias


@some
@given(t=st.floats(0, 1), bmin=st.floats(0.01, 1), bmax=st.floats(1, 30))
def test_vp_marginal_is_exp_of_half_the_integrated_beta(t, bmin, bmax):
    sde = VPSDE(bmin, bmax)
    tt = torch.linspace(0, t, 2001, dtype=torch.float64)
    integral = torch.trapezoid(sde.beta(tt), tt)
    m, std = sde.marginal(torch.tensor(t, dtype=torch.float64))
    assert float(m) == pytest.approx(math.exp(-0.5 * float(integral)), rel=1e-6)
    assert float(m**2 + std**2) == pytest.approx(1.0, abs=1e-12)


@some
@given(t=st.floats(0, 1), smin=st.floats(0.001, 0.1), ratio=st.floats(2, 1000))
def test_ve_sigma_is_geometric(t, smin, ratio):
    sde = VESDE(smin, smin * ratio)
    s = float(sde.sigma(torch.tensor(t, dtype=torch.float64)))
    assert s == pytest.approx(smin ** (1 - t) * (smin * ratio) ** t, rel=1e-9)
    assert float(sde.marginal(torch.tensor(0.0))[1]) == 0.0


@some
@given(mean=st.floats(-1.5, 1.5), log_std=st.floats(-6, 1), levels=st.integers(2, 257))
def test_discretized_gaussian_is_a_pmf_over_the_levels(mean, log_std, levels):
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64)[:, None]
    logp = discretized_gaussian_logp(grid, torch.full_like(grid, mean), math.exp(log_std), levels)
    assert float(torch.logsumexp(logp, 0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("sde,trace", [("vp", "exact"), ("ve", "exact"), ("vp", "hutchinson")])
def test_probability_flow_logprob_is_exact_for_gaussian_data(sde, trace):
    """With the true score of N(0, s^2 I) data, the PF-ODE likelihood equals the Gaussian density (up to the
    prior's approximation N(0, std(1)^2), negligible for these sde settings)."""
    info = unigen.DataInfo(name="gauss", shape=(2,), kind="vector")
    model = unigen.build_model("score-sde", info, {"sde": sde, "trace": trace, "sigma_max": 50.0, "t_min": 1e-4})
    s2 = 0.6**2

    def true_eps(x, t):
        m, std = model._coefs(t, x)
        return std * x / (m**2 * s2 + std**2)  # eps = -std * score, score = -x / var_t

    model.eps = true_eps
    x = torch.randn(16, 2) * 0.6
    m, std = model.sde.marginal(torch.tensor(model.config.t_min))
    var = float(m**2 * s2 + std**2)
    want = (-0.5 * x.pow(2) / var - 0.5 * math.log(2 * math.pi * var)).sum(1)
    torch.testing.assert_close(model.logprob(x), want, rtol=0, atol=2e-3)


def empirical_eps(model, points):
    """The exact eps of the noised empirical distribution of ``points`` (N, D):
    eps*(x, t) = (x - m(t) E[x_0 | x_t = x]) / std(t), E[x_0 | x] their softmax-weighted mean."""
    def eps(x, t):
        m, std = model._coefs(t, x)  # (B, 1) each
        d2 = (x[:, None] - m[:, None] * points[None]).pow(2).sum(-1)  # (B, N)
        return (x - m * (torch.softmax(-d2 / (2 * std**2), 1) @ points)) / std
    return eps


@pytest.mark.parametrize("sde", ["ve", "vp"])
def test_predictor_corrector_with_the_exact_score_samples_moons(sde):
    """Song et al.'s PC sampler (a Langevin corrector step at the default snr, 0.16 VE / 0.01 VP, before each of
    100 Euler-Maruyama steps) with the exact score of 500 moons points: MMD^2 to fresh moons -0.008 (VE) and
    -0.007 (VP), where a fitted 4-component mixture scores 0.030 (two draws of moons: -0.015, the sets are
    evenly spread along the arcs). With the corrector's norms taken per example instead of over the batch (a
    2-D score can be near 0 between the moons, and the step e = 2 (r |z| / |s|)^2 explodes) VE scored 0.047,
    and VP at the old default snr 0.16 scored 0.052; the old sampler (also the corrector after each predictor
    step) 0.041 and 0.036."""
    from unigen.data.toy import sample_toy
    from unigen.metrics.mmd import mmd2

    cfg = {"sde": sde, "sigma_max": 5.0, "sample_steps": 100, "corrector_steps": 1}
    model = unigen.build_model("score-sde", unigen.load_dataset("moons").info, cfg).eval()
    model.eps = empirical_eps(model, sample_toy("moons", 500, seed=1))
    torch.manual_seed(0)
    assert float(mmd2(model.sample(400), sample_toy("moons", 400, seed=7))) < 0.015
