"""The registered ODE/SDE samplers reach the known solution of linear ODEs at their order.

Errors are measured in float64 against closed forms, integrating from t=1 (noise) to t=0 (data) as every
sampler does; the observed order is log2(e(h) / e(h/2)).
"""

from __future__ import annotations

import math

import pytest
import torch

from unigen import ConfigError
from unigen.plugin import get_sampler

A = torch.tensor([[-0.5, 1.2], [-0.9, -0.3]], dtype=torch.float64)  # a damped rotation
X1 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=torch.float64)  # two initial states at t=1


def autonomous(x, t):
    """dx/dt = A x; x(0) = expm(-A) x(1)."""
    return x @ A.T


def autonomous_exact(t_start=1.0, t_end=0.0):
    return X1 @ torch.linalg.matrix_exp(A * (t_end - t_start)).T


def time_dependent(x, t):
    """dx/dt = (1 + 2 t) x; x(0) = x(1) exp(-(1 + 1)) (exponent: [t + t^2] from 1 to 0). The step's t
    must be passed correctly for the order to hold."""
    return (1 + 2 * t)[:, None] * x


def time_dependent_exact():
    return X1 * math.exp(-2.0)


CASES = [(autonomous, autonomous_exact()), (time_dependent, time_dependent_exact())]


def _error(name, fn, exact, steps):
    out = get_sampler(name, kind="ode").solve(fn, X1.clone(), steps)
    return float((out - exact).abs().max())


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_fixed_step_solvers_converge_at_their_order(name, case):
    fn, exact = CASES[case]
    order = get_sampler(name).order
    errors = [_error(name, fn, exact, n) for n in (16, 32, 64)]
    observed = [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:])]
    assert all(abs(p - order) < 0.25 for p in observed), (name, errors, observed)
    assert errors[-1] < 5 * (1 / 64) ** order  # the error constant is of order one, not only the rate


@pytest.mark.parametrize("case", range(len(CASES)))
def test_dopri5_meets_its_tolerance(case):
    fn, exact = CASES[case]
    spec = get_sampler("dopri5", kind="ode")
    loose = float((spec.solve(fn, X1.clone(), None, rtol=1e-4, atol=1e-4) - exact).abs().max())
    tight = float((spec.solve(fn, X1.clone(), None, rtol=1e-10, atol=1e-10) - exact).abs().max())
    assert tight < 1e-8 and tight < loose < 1e-3


def test_samplers_integrate_from_noise_to_data_by_default():
    """Default t_start=1, t_end=0: dx/dt = 1 lowers x by exactly 1."""
    ones = lambda x, t: torch.ones_like(x)
    for name in ("euler", "heun", "rk4", "dopri5"):
        out = get_sampler(name).solve(ones, torch.zeros(3, 2, dtype=torch.float64), 4)
        assert torch.allclose(out, torch.full_like(out, -1.0)), name


def test_euler_maruyama_without_noise_is_euler_and_first_order():
    sde = lambda x, t: (autonomous(x, t), torch.zeros_like(x))
    em = get_sampler("euler-maruyama", kind="sde")
    exact = autonomous_exact()
    errors = [float((em.solve(sde, X1.clone(), n) - exact).abs().max()) for n in (32, 64)]
    assert abs(math.log2(errors[0] / errors[1]) - 1) < 0.25
    euler = get_sampler("euler").solve(autonomous, X1.clone(), 32)
    assert torch.allclose(em.solve(sde, X1.clone(), 32), euler)


def test_euler_maruyama_matches_the_ornstein_uhlenbeck_marginal():
    """Reverse time s = 1 - t: dx = -a x ds + g dW, x(s=0) = 1, gives N(e^{-a}, g^2 (1 - e^{-2a}) / 2a)."""
    a, g = 1.5, 0.8
    sde = lambda x, t: (a * x, torch.full_like(x, g))  # drift in dt < 0, so -a x per ds
    gen = torch.Generator().manual_seed(0)
    x = torch.ones(40_000, 1, dtype=torch.float64)
    out = get_sampler("euler-maruyama", kind="sde").solve(sde, x, 200, generator=gen, denoise_last=False)
    mean, var = math.exp(-a), g * g * (1 - math.exp(-2 * a)) / (2 * a)
    assert abs(float(out.mean()) - mean) < 0.01
    assert abs(float(out.var()) - var) / var < 0.05


def test_sampler_kinds_are_checked():
    with pytest.raises(ConfigError, match="SDE"):
        get_sampler("euler-maruyama", kind="ode")


def test_registered_sampler_validator_gives_one_clear_error():
    from unigen.plugin import registered_sampler

    check = registered_sampler("ode")
    check(None, None, "heun")
    with pytest.raises(ValueError, match=r"'sampler' = 'nope': .*euler"):
        check(None, None, "nope")
    with pytest.raises(ValueError, match="SDE solver"):
        check(None, None, "euler-maruyama")
    registered_sampler()(None, None, "euler-maruyama")  # any kind
