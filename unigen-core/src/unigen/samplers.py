"""ODE and SDE integrators, registered by name through ``unigen_register_samplers``.

Every sampler integrates **from t=1 (noise) to t=0 (data)**, the convention of every family.

ODE samplers: ``solve(fn, x, steps, t_start=1.0, t_end=0.0, **options)`` with ``fn(x, t) -> dx/dt``
where ``t`` is a tensor of shape (B,). SDE samplers: ``fn(x, t) -> (drift, diffusion)`` of the
reverse-time SDE ``dx = drift dt + diffusion dW`` (dt < 0 from 1 to 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .progress import track
from .registry import SamplerSpec

Field = Callable[[Tensor, Tensor], Tensor]


def _grid(steps: int, t_start: float, t_end: float) -> list[float]:
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64).tolist()


def _tvec(x: Tensor, t: float) -> Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)


class _Time:
    """A (B,) time vector handed to ``fn``, refilled in place for each call (no allocation per step).
    Each call site of a solver has its own, so ``t`` keeps its value until the solver's next step."""

    def __init__(self, x: Tensor) -> None:
        self.buf = _tvec(x, 0.0)

    def __call__(self, t: float) -> Tensor:
        return self.buf.fill_(t)


# The fixed-step solvers below update x in place and reuse one scratch buffer, so a step allocates
# nothing beyond the network's output: Euler   x += h f(x, a)
#                                       Heun    x += h/2 (f(x, a) + f(x + h f(x, a), b))
#                                       RK4     x += h/6 (k1 + 2 k2 + 2 k3 + k4)
# Each k is consumed (added into x or an accumulator) before the next call of fn, so a field that
# returns the same output buffer every call is integrated correctly too.


@torch.no_grad()
def euler(fn: Field, x: Tensor, steps: int, t_start: float = 1.0, t_end: float = 0.0, **_: object) -> Tensor:
    """Explicit Euler, order 1: x += h f(x, t)."""
    ts = _grid(steps, t_start, t_end)
    x = x.clone()
    ta = _Time(x)
    for a, b in track(zip(ts[:-1], ts[1:]), total=steps):
        x.add_(fn(x, ta(a)), alpha=b - a)
    return x


@torch.no_grad()
def heun(fn: Field, x: Tensor, steps: int, t_start: float = 1.0, t_end: float = 0.0, **_: object) -> Tensor:
    """Heun's method (explicit trapezoid), order 2: two evaluations per step."""
    ts = _grid(steps, t_start, t_end)
    x = x.clone()
    y = torch.empty_like(x)  # the Euler predictor x + h d1
    ta, tb = _Time(x), _Time(x)
    for a, b in track(zip(ts[:-1], ts[1:]), total=steps):
        h = b - a
        d1 = fn(x, ta(a))
        torch.add(x, d1, alpha=h, out=y)
        x.add_(d1, alpha=h / 2)
        x.add_(fn(y, tb(b)), alpha=h / 2)
    return x


@torch.no_grad()
def rk4(fn: Field, x: Tensor, steps: int, t_start: float = 1.0, t_end: float = 0.0, **_: object) -> Tensor:
    """Classical Runge-Kutta, order 4."""
    ts = _grid(steps, t_start, t_end)
    x = x.clone()
    y, acc = torch.empty_like(x), torch.empty_like(x)  # stage input; x_n + h/6 (k1 + 2 k2 + 2 k3) so far
    ta, tm, tm2, tb = _Time(x), _Time(x), _Time(x), _Time(x)
    for a, b in track(zip(ts[:-1], ts[1:]), total=steps):
        h = b - a
        k = fn(x, ta(a))
        torch.add(x, k, alpha=h / 6, out=acc)
        torch.add(x, k, alpha=h / 2, out=y)
        k = fn(y, tm(a + h / 2))
        acc.add_(k, alpha=h / 3)
        torch.add(x, k, alpha=h / 2, out=y)
        k = fn(y, tm2(a + h / 2))
        acc.add_(k, alpha=h / 3)
        torch.add(x, k, alpha=h, out=y)
        k = fn(y, tb(b))
        x, acc = acc.add_(k, alpha=h / 6), x
    return x


@torch.no_grad()
def dopri5(
    fn: Field, x: Tensor, steps: int | None = None, t_start: float = 1.0, t_end: float = 0.0,
    rtol: float = 1e-5, atol: float = 1e-5, **_: object,
) -> Tensor:
    """Adaptive Dormand-Prince 5(4) through torchdiffeq; ``steps`` is ignored (adaptive)."""
    from torchdiffeq import odeint

    ts = torch.tensor([t_start, t_end], dtype=x.dtype, device=x.device)
    return odeint(lambda t, y: fn(y, t.expand(y.shape[0])), x, ts, rtol=rtol, atol=atol, method="dopri5")[-1]


@torch.no_grad()
def euler_maruyama(
    fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], x: Tensor, steps: int, t_start: float = 1.0,
    t_end: float = 0.0, generator: torch.Generator | None = None, denoise_last: bool = True, **_: object,
) -> Tensor:
    """Euler-Maruyama for the reverse SDE: x += f dt + g sqrt(|dt|) z; no noise on the last step."""
    ts = _grid(steps, t_start, t_end)
    x = x.clone()
    noise = torch.empty_like(x)  # drawn in place each step (the same numbers torch.randn would give)
    ta = _Time(x)
    for i, (a, b) in enumerate(track(zip(ts[:-1], ts[1:]), total=steps)):
        dt = b - a
        drift, diffusion = fn(x, ta(a))
        x.add_(drift, alpha=dt)
        if not (denoise_last and i == steps - 1):
            noise.normal_(generator=generator)
            if isinstance(diffusion, Tensor):
                x.addcmul_(noise, diffusion, value=abs(dt) ** 0.5)
            else:
                x.add_(noise, alpha=float(diffusion) * abs(dt) ** 0.5)
    return x


BUILTIN = [
    SamplerSpec(id="euler", solve=euler, kind="ode", order=1, description="explicit Euler"),
    SamplerSpec(id="heun", solve=heun, kind="ode", order=2, description="Heun (trapezoid)"),
    SamplerSpec(id="rk4", solve=rk4, kind="ode", order=4, description="classical Runge-Kutta"),
    SamplerSpec(id="dopri5", solve=dopri5, kind="ode", order=5, description="adaptive, torchdiffeq"),
    SamplerSpec(id="euler-maruyama", solve=euler_maruyama, kind="sde", order=1, description="reverse SDE"),
]
