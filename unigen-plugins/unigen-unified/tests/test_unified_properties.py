"""Properties of the unified family's mathematics: interpolant schedules, Langevin, MMD, UOT weights,
DiffFlow's two limits."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen import broadcast_t
from unigen.metrics.mmd import mmd2
from unigen_unified import Interpolant, get_schedule, register_schedule, schedule_names
from unigen_unified.data import with_outliers
from unigen_unified.ebm import grid_log_partition, langevin
from unigen_unified.unbalanced_ot import relaxed_marginal_weights, weighted_mmd2

SCHEDULES = ["linear", "trig", "vp"]
gammas = st.floats(0.0, 2.0)


def _pair(seed: int, shape=(6, 3)):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) for _ in range(3))


def test_builtin_schedules_are_registered():
    assert set(SCHEDULES) <= set(schedule_names())


@pytest.mark.parametrize("name", SCHEDULES)
@given(a=gammas, seed=st.integers(0, 2**16))
def test_interpolant_hits_both_endpoints(name, a, seed):
    sched = get_schedule(name, a)
    x0, x1, eps = _pair(seed)
    for t_val, want in ((0.0, x0), (1.0, x1)):
        t = torch.full((x0.shape[0],), t_val, dtype=torch.float64)
        it, _ = sched.interpolate(x0, x1, eps, t)
        assert torch.allclose(it, want, atol=1e-10), (name, t_val)
        assert torch.allclose(sched.gamma(t), torch.zeros_like(t))


@pytest.mark.parametrize("name", SCHEDULES)
@given(a=gammas, t=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_analytic_time_derivative_equals_autograd(name, a, t, seed):
    sched = get_schedule(name, a)
    tt = torch.tensor(t, dtype=torch.float64).clamp(min=max(sched.t_min, 1e-6))
    x0, x1, eps = _pair(seed, (tt.shape[0], 3))
    for f, df in ((sched.alpha, sched.dalpha), (sched.beta, sched.dbeta), (sched.gamma, sched.dgamma)):
        tg = tt.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(f(tg).sum(), tg)
        assert torch.allclose(df(tt), auto, rtol=1e-9, atol=1e-9)
    _, dit = sched.interpolate(x0, x1, eps, tt)
    _, auto = torch.autograd.functional.jvp(lambda s: sched.interpolate(x0, x1, eps, s)[0], tt, torch.ones_like(tt))
    assert torch.allclose(dit, auto, rtol=1e-8, atol=1e-8)


@given(t=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_linear_target_is_flow_matchings(t, seed):
    x0, x1, eps = _pair(seed)
    it, dit = get_schedule("linear").interpolate(x0, x1, eps, torch.full((6,), t, dtype=torch.float64))
    assert torch.allclose(dit, x1 - x0) and torch.allclose(it, (1 - t) * x0 + t * x1)


@pytest.mark.parametrize("name", SCHEDULES)
@given(a=st.floats(0.01, 3.0), seed=st.integers(0, 2**16))
def test_denoiser_target_is_finite_at_both_ends_of_time(name, a, seed):
    """g_t / sigma_t is 0/0 where beta_t = gamma_t = 0 (t = 0); its limit is finite (torch.rand returns 0)."""
    sched = get_schedule(name, a)
    x0, x1, eps = _pair(seed)
    for t_val in (0.0, sched.t_min, 1.0):
        t = torch.full((x0.shape[0],), t_val, dtype=torch.float64)
        cb, cg = (broadcast_t(c, x0) for c in sched.noise_direction(t))
        z = cb * x1 + cg * eps
        assert torch.isfinite(z).all() and torch.allclose(cb * cb + cg * cg, torch.ones_like(cb)), (name, t_val)
        if t_val > 0:  # where sigma_t > 0 it is the plain quotient
            _, b, g, *_ = (broadcast_t(c, x0) for c in sched.coefficients(t))
            assert torch.allclose(z, (b * x1 + g * eps) / (b * b + g * g).sqrt())
    t0 = torch.zeros(x0.shape[0], dtype=torch.float64)
    cb, cg = sched.noise_direction(t0)
    near = sched.noise_direction(torch.full_like(t0, 1e-9))  # the value at 0 is the limit t -> 0+
    assert torch.allclose(cb, near[0], atol=1e-3) and torch.allclose(cg, near[1], atol=1e-3), name


@pytest.mark.parametrize("name", SCHEDULES)
def test_model_loss_is_finite_when_t_is_exactly_an_end(name, monkeypatch):
    data = unigen.load_dataset("moons")
    model = unigen.build_model("stochastic-interpolant", data.info, {"schedule": name, "gamma": 1.0, "hidden": 8,
                                                                     "depth": 1})
    batch = data.batch(slice(0, 8))
    for t_val in (model.interpolant.t_min, 1.0):
        monkeypatch.setattr(model, "sample_times", lambda n, device, dtype, t_val=t_val: torch.full(
            (n,), t_val, device=device, dtype=dtype))
        assert torch.isfinite(model.loss(batch)), (name, t_val)


def test_linear_model_loss_is_flow_matching_loss():
    data = unigen.load_dataset("moons")
    model = unigen.build_model("stochastic-interpolant", data.info, {"hidden": 16, "depth": 1})
    batch = data.batch(slice(0, 32))
    torch.manual_seed(7)
    loss = model.loss(batch)
    torch.manual_seed(7)
    t = torch.rand(32)
    x1 = torch.randn_like(batch.x)
    xt = (1 - t[:, None]) * batch.x + t[:, None] * x1
    want = (model.fields(xt, t)[0] - (x1 - batch.x)).pow(2).mean()
    assert torch.allclose(loss, want, atol=1e-6)


def test_unknown_schedule_lists_known_ones_and_plugins_can_add_one():
    with pytest.raises(unigen.UnknownId, match="linear"):
        get_schedule("no-such-path")
    with pytest.raises(unigen.ConfigError, match="schedule"):
        unigen.model_config("stochastic-interpolant", {"schedule": "no-such-path"})

    @attrs.frozen(kw_only=True)
    class Quadratic(Interpolant):  # alpha = 1 - t^2, beta = t^2
        def alpha(self, t):
            return 1 - t * t

        def beta(self, t):
            return t * t

        def dalpha(self, t):
            return -2 * t

        def dbeta(self, t):
            return 2 * t

    register_schedule("quadratic-test", Quadratic)
    data = unigen.load_dataset("moons")
    model = unigen.build_model("stochastic-interpolant", data.info, {"schedule": "quadratic-test", "hidden": 8})
    assert isinstance(model.interpolant, Quadratic) and torch.isfinite(model.loss(data.batch(slice(0, 8))))
    with pytest.raises(ValueError, match="already registered"):
        register_schedule("linear", Quadratic)


def test_sde_sampling_needs_gamma():
    with pytest.raises(unigen.ConfigError, match="gamma"):
        unigen.model_config("stochastic-interpolant", {"sampler": "euler-maruyama"})
    data = unigen.load_dataset("moons")
    model = unigen.build_model("stochastic-interpolant", data.info,
                               {"gamma": 1.0, "sampler": "euler-maruyama", "hidden": 16})
    assert model.sample(5, steps=4).shape == (5, 2)


def test_stochastic_interpolant_runs_on_images_with_the_unet():
    data = unigen.load_dataset("digits")
    model = unigen.build_model("stochastic-interpolant", data.info, {"width": 8, "schedule": "trig", "gamma": 0.5})
    assert model.net.unet is not None
    assert torch.isfinite(model.loss(data.batch(slice(0, 4))))
    assert model.sample(2, steps=2).shape == (2, 1, 8, 8)


def test_langevin_reaches_a_gaussians_mean_and_variance():
    mean, var = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])

    def energy(x):
        return 0.5 * ((x - mean) ** 2 / var).sum(1)

    gen = torch.Generator().manual_seed(0)
    x = langevin(energy, torch.randn(4000, 2, generator=gen), steps=600, step_size=0.02, generator=gen)
    assert torch.allclose(x.mean(0), mean, atol=0.08), x.mean(0)
    assert torch.allclose(x.var(0), var, rtol=0.08), x.var(0)


def test_grid_normalizer_of_a_standard_gaussian_energy_is_log_two_pi():
    log_z = grid_log_partition(lambda x: 0.5 * (x * x).sum(1), bound=6.0, n=300)
    assert abs(float(log_z) - math.log(2 * math.pi)) < 1e-3


def test_energy_model_normalized_logprob_integrates_to_one():
    data = unigen.load_dataset("moons")
    model = unigen.build_model("ebm", data.info, {"hidden": 16, "normalize_grid": 100, "grid_bound": 5.0})
    assert model.logprob_kind == "unnormalized"
    with torch.no_grad():
        raw = -model.energy(data.x[:5])
        lp = model.logprob(data.x[:5])
        assert torch.allclose(raw - lp, model.log_partition().float().expand(5))  # a constant shift
        width = 10.0 / 400
        c = -5.0 + width * (torch.arange(400) + 0.5)
        mass = model.logprob(torch.cartesian_prod(c, c)).exp().sum() * width**2  # a finer grid than the normalizer's
    assert abs(float(mass) - 1) < 0.02


def test_energy_matching_normalized_boltzmann_density_integrates_to_one():
    data = unigen.load_dataset("moons")
    model = unigen.build_model("energy-matching", data.info, {"hidden": 16, "normalize_grid": 100, "grid_bound": 5.0,
                                                              "eps_max": 1.0})
    with torch.no_grad():
        x = data.x[:5]
        shift = -model.potential(x) / model.config.eps_max - model.logprob(x)
        assert torch.allclose(shift, shift[:1].expand(5))  # log Z: a constant
        width = 10.0 / 400
        c = -5.0 + width * (torch.arange(400) + 0.5)
        mass = model.logprob(torch.cartesian_prod(c, c)).exp().sum() * width**2
    assert abs(float(mass) - 1) < 0.02


@given(seed=st.integers(0, 2**16), shift=st.floats(0.05, 3.0))
def test_mmd_is_zero_for_identical_samples_and_positive_otherwise(seed, shift):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 2, generator=gen)
    assert float(mmd2(x, x, unbiased=False)) == 0.0
    assert float(mmd2(x, x + shift, unbiased=False)) > 0
    y = torch.randn(64, 2, generator=gen)
    ones = torch.ones(64)
    assert torch.allclose(weighted_mmd2(x, y, ones, (0.5, 1.0)), mmd2(x, y, (0.5, 1.0)))


def test_relaxed_marginal_drops_outliers_and_is_balanced_for_large_rho():
    clean = unigen.data.toy.sample_toy("moons", 200, seed=5)
    x, is_out = with_outliers(clean, 0.1, seed=5)
    w = relaxed_marginal_weights(clean[:150], x, rho=1.0, blur=0.1, iters=50)
    assert w[is_out].mean() < 0.3 * w[~is_out].mean()
    w_bal = relaxed_marginal_weights(clean[:150], x, rho=1e4, blur=0.1, iters=300)
    assert torch.allclose(w_bal, torch.ones_like(w_bal), atol=0.05)


def test_moons_outliers_dataset_has_ten_percent_outliers():
    data = unigen.load_dataset("moons-outliers")
    far = (data.x.abs() > 2.5).any(1).float().mean()
    assert 0.03 < float(far) < 0.1 and data.info.name == "moons-outliers"


def test_jko_step_freezes_the_current_map():
    data = unigen.load_dataset("moons")
    model = unigen.build_model("wasserstein-flow", data.info, {"hidden": 8, "jko_every": 3})
    with torch.no_grad():
        for p in model.transport.parameters():
            p.add_(1.0)
    z = torch.randn(4, 2)
    model.after_step("main", 1)
    assert not torch.allclose(model.push(z), model.push(z, model.previous))
    model.after_step("main", 2)
    assert torch.equal(model.push(z), model.push(z, model.previous))
    assert all(not p.requires_grad for p in model.previous.parameters())


def _diffflow(lam):
    data = unigen.load_dataset("moons")
    return data, unigen.build_model("diffflow", data.info, {"lam": lam, "hidden": 16, "disc_hidden": 16})


def test_diffflow_lambda_one_is_pure_score_matching():
    data, model = _diffflow(1.0)
    batch = data.batch(slice(0, 32))
    assert all("discriminator" not in model.active_groups(s) for s in range(4))
    torch.manual_seed(3)
    loss = model.loss(batch, "generator")
    torch.manual_seed(3)
    assert torch.equal(loss, model.score_matching_loss(batch.x))
    loss.backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert model.sampler_name() == "heun"


def test_diffflow_lambda_zero_is_a_gan():
    data, model = _diffflow(0.0)
    batch = data.batch(slice(0, 32))
    assert model.active_groups(0) == ("discriminator", "generator")
    torch.manual_seed(3)
    loss = model.loss(batch, "generator")
    torch.manual_seed(3)
    want = F.softplus(-model.critic(model.generate(torch.randn_like(batch.x)))).mean()
    assert torch.allclose(loss, want)
    # The data enters the generator's loss only through the discriminator: no score term.
    other = unigen.Batch(batch.x + 100.0)
    torch.manual_seed(3)
    assert torch.allclose(model.loss(other, "generator"), loss)
    assert model.sampler_name() == "generator"


def _grads(model, loss):
    params = list(model.denoiser.parameters())
    return torch.autograd.grad(loss, params, allow_unused=True)


def test_diffflow_lambda_one_gradient_is_the_score_matching_gradient():
    data, model = _diffflow(1.0)
    batch = data.batch(slice(0, 32))
    torch.manual_seed(5)
    mixed = _grads(model, model.generator_loss(batch.x))
    torch.manual_seed(5)
    dsm = _grads(model, model.score_matching_loss(batch.x))
    assert all(torch.equal(a, b) for a, b in zip(mixed, dsm))


def test_diffflow_lambda_zero_gradient_is_the_gan_gradient():
    data, model = _diffflow(0.0)
    batch = data.batch(slice(0, 32))
    torch.manual_seed(5)
    mixed = _grads(model, model.generator_loss(batch.x))
    torch.manual_seed(5)
    gan = _grads(model, F.softplus(-model.critic(model.generate(torch.randn_like(batch.x)))).mean())
    assert all(torch.allclose(a, b) for a, b in zip(mixed, gan))
    assert any(float(g.abs().sum()) > 0 for g in mixed)  # the adversarial term moves the sampler network


def test_diffflow_sampling_keeps_the_trained_unroll():
    data = unigen.load_dataset("moons")
    model = unigen.build_model("diffflow", data.info, {"lam": 0.5, "hidden": 16, "disc_hidden": 16, "gen_steps": 3})
    torch.manual_seed(0)
    trained = model.sample(64)
    with pytest.warns(UserWarning, match="3-step unroll"):
        torch.manual_seed(0)
        asked = model.sample(64, steps=20)  # what `unigen sample --steps 20` passes
    assert torch.equal(asked, trained)
    torch.manual_seed(0)
    z = torch.randn(64, 2)
    assert torch.equal(trained, model.generate(z, 3))
    # An explicit sample_unroll is the user's informed choice: it changes the unroll.
    other = unigen.build_model("diffflow", data.info, {"lam": 0.5, "hidden": 16, "disc_hidden": 16, "gen_steps": 3,
                                                       "sample_unroll": 6})
    other.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    assert torch.equal(other.sample(64), model.generate(z, 6))


# -- energy matching (Balcerak et al. 2025) ------------------------------------------------------------


@given(t_star=st.floats(0.05, 1.0), eps_max=st.floats(1e-3, 1.0), t=st.floats(-1.0, 1.0))
def test_energy_matching_temperature_is_zero_far_from_data_and_eps_max_past_it(t_star, eps_max, t):
    from unigen_unified.energy_matching import temperature

    eps = temperature(t, t_star, eps_max)
    assert 0 <= eps <= eps_max
    if t >= t_star:
        assert eps == 0
    if t <= 0:
        assert eps == eps_max
    if 0 < t < t_star:  # the linear ramp
        assert math.isclose(eps, eps_max * (t_star - t) / t_star, rel_tol=1e-12)


@given(n=st.integers(1, 6), seed=st.integers(0, 1000))
def test_ot_pairs_is_the_cheapest_assignment(n, seed):
    import itertools

    from unigen_unified.energy_matching import ot_pairs

    gen = torch.Generator().manual_seed(seed)
    x0, x1 = (torch.randn(n, 2, generator=gen, dtype=torch.float64) for _ in range(2))
    paired = ot_pairs(x0, x1)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, x1.tolist()))  # a permutation of x1
    best = min(sum(float((x0[i] - x1[p[i]]).pow(2).sum()) for i in range(n)) for p in itertools.permutations(range(n)))
    assert math.isclose(float((x0 - paired).pow(2).sum()), best, rel_tol=1e-9, abs_tol=1e-9)


def test_energy_matching_velocity_is_minus_the_gradient_of_one_scalar():
    data = unigen.load_dataset("moons")
    model = unigen.build_model("energy-matching", data.info, {"hidden": 16, "depth": 2})
    x = torch.randn(7, 2, requires_grad=True)
    (want,) = torch.autograd.grad(model.potential(x).sum(), x)
    assert model.potential(x).shape == (7,)
    assert torch.allclose(model.grad_potential(x.detach()), want)
    # Its Jacobian is symmetric: a gradient field has no curl.
    jac = torch.autograd.functional.jacobian(lambda y: model.grad_potential(y[None], create_graph=True)[0], x[0].detach())
    assert torch.allclose(jac, jac.T, atol=1e-6)


def test_energy_matching_phase_one_is_ot_flow_matching_and_phase_two_adds_the_contrastive_term():
    data = unigen.load_dataset("moons")
    model = unigen.build_model("energy-matching", data.info, {"hidden": 16, "depth": 2, "phase1_steps": 2,
                                                              "mcmc_steps": 3})
    batch = data.batch(slice(0, 32))
    x0 = batch.x
    torch.manual_seed(0)
    loss = model.loss(batch)
    # L_OT by hand: the same draws, in the same order.
    torch.manual_seed(0)
    from unigen_unified.energy_matching import ot_pairs

    x1 = ot_pairs(x0, torch.randn_like(x0))
    t = torch.rand(32, 1)
    xt = ((1 - t) * x0 + t * x1 + model.config.sigma * torch.randn_like(x0)).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.potential(xt).sum(), xt)
    assert torch.allclose(loss, (grad - (x1 - x0)).pow(2).sum(1).mean(), rtol=1e-5)
    assert model.phase == 1
    model.after_step("main", 0)
    model.after_step("main", 1)
    assert model.phase == 2
    torch.manual_seed(0)
    mixed = model.loss(batch)
    torch.manual_seed(0)
    fm = model.flow_matching_loss(x0)
    negatives = model.negatives(x0)
    cd = model.potential(x0).mean() - model.potential(negatives).mean()
    assert torch.allclose(mixed, fm + model.config.cd_weight * cd, rtol=1e-5)
    assert not torch.allclose(mixed, fm)
