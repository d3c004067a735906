"""ODE and SDE integrators, registered by name through ``unigen_register_samplers``.

Every sampler integrates **from t=1 (noise) to t=0 (data)** (DESIGN.md's convention).

ODE samplers: ``solve(fn, x, steps, t_start=1.0, t_end=0.0, **options)`` with ``fn(x, t) -> dx/dt``
where ``t`` is a tensor of shape (B,). SDE samplers: ``fn(x, t) -> (drift, diffusion)`` of the
reverse-time SDE ``dx = drift dt + diffusion dW`` (dt < 0 from 1 to 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .registry import SamplerSpec

Field = Callable[[Tensor, Tensor], Tensor]


def _grid(steps: int, t_start: float, t_end: float) -> list[float]:
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64).tolist()


def _tvec(x: Tensor, t: float) -> Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)


@torch.no_grad()
def euler(fn: Field, x: Tensor, steps: int, t_start: float = 1.0, t_end: float = 0.0, **_: object) -> Tensor:
    """Explicit Euler, order 1: x += h f(x, t)."""
    ts = _grid(steps, t_start, t_end)
    x = x.clone()
    for a, b in zip(ts[:-1], ts[1:]):
        x.add_(fn(x, _tvec(x, a)), alpha=b - a)  # in place: allocates only the network's output
    return x


@torch.no_grad()
def heun(fn: Field, x: Tensor, steps: int, t_start: float = 1.0, t_end: float = 0.0, **_: object) -> Tensor:
    """Heun's method (explicit trapezoid), order 2: two evaluations per step."""
    ts = _grid(steps, t_start, t_end)
    x = x.clone()
    for a, b in zip(ts[:-1], ts[1:]):
        h = b - a
        d1 = fn(x, _tvec(x, a))
        d2 = fn(x + h * d1, _tvec(x, b))
        x.add_(d1 + d2, alpha=h / 2)
    return x


@torch.no_grad()
def rk4(fn: Field, x: Tensor, steps: int, t_start: float = 1.0, t_end: float = 0.0, **_: object) -> Tensor:
    """Classical Runge-Kutta, order 4."""
    ts = _grid(steps, t_start, t_end)
    x = x.clone()
    for a, b in zip(ts[:-1], ts[1:]):
        h = b - a
        k1 = fn(x, _tvec(x, a))
        k2 = fn(x + h / 2 * k1, _tvec(x, a + h / 2))
        k3 = fn(x + h / 2 * k2, _tvec(x, a + h / 2))
        k4 = fn(x + h * k3, _tvec(x, b))
        x.add_(k1 + 2 * k2 + 2 * k3 + k4, alpha=h / 6)
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
    for i, (a, b) in enumerate(zip(ts[:-1], ts[1:])):
        dt = b - a
        drift, diffusion = fn(x, _tvec(x, a))
        x.add_(drift, alpha=dt)
        if not (denoise_last and i == steps - 1):
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x.add_(diffusion * noise * abs(dt) ** 0.5)
    return x


BUILTIN = [
    SamplerSpec(id="euler", solve=euler, kind="ode", order=1, description="explicit Euler"),
    SamplerSpec(id="heun", solve=heun, kind="ode", order=2, description="Heun (trapezoid)"),
    SamplerSpec(id="rk4", solve=rk4, kind="ode", order=4, description="classical Runge-Kutta"),
    SamplerSpec(id="dopri5", solve=dopri5, kind="ode", order=5, description="adaptive, torchdiffeq"),
    SamplerSpec(id="euler-maruyama", solve=euler_maruyama, kind="sde", order=1, description="reverse SDE"),
]


def get_sampler(name: str, kind: str | None = None) -> SamplerSpec:
    """Look a sampler up in the default host's registry, checking its kind."""
    from .errors import ConfigError
    from .plugins import default_host

    spec = default_host().samplers[name]
    if kind is not None and spec.kind != kind:
        raise ConfigError(f"sampler {name!r} is an {spec.kind.upper()} solver; this model needs an {kind.upper()} solver")
    return spec
