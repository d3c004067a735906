"""Noise schedules as pure functions, computed in float64 (models cast them once into buffers).

Discrete schedules (DDPM, Ho et al. 2020) are indexed n = 1..T; the arrays below have T + 1 entries
with index 0 the data (beta_0 = 0, alpha_bar_0 = 1), so a sampler's last step "to n = 0" needs no
special case. The network sees t = n / T in [0, 1] (t=0 data, t=1 noise).

- ``linear``: beta_n linear from 1e-4 to 0.02 for T = 1000 (Ho et al. 2020, Sec. 4), both ends
  scaled by 1000 / T so that other T keep the same total noise (Nichol & Dhariwal 2021, App. A).
- ``cosine``: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(pi/2 (t + s)/(1 + s)), s = 0.008, and
  beta_n = 1 - alpha_bar(n/T) / alpha_bar((n-1)/T) clipped at 0.999 (Nichol & Dhariwal 2021, Eq. 17).

Both clip beta at 0.999 so that alpha_bar_T > 0 for any T.

DDIM timestep subsequences (Song et al. 2021a, Sec. 4.2) for n sampling steps out of T. Each is a
strictly decreasing list tau_n > ... > tau_1 >= 1; the step from tau_i goes to tau_{i-1} *of the same
list* (and tau_1 goes to 0). Computing the previous timestep as tau - T // n instead is wrong for
``linspace`` and ``trailing`` spacing (diffusers #12633, #11347): here it is never computed, only read.
- ``trailing``: round(linspace(T, 0, n + 1))[:-1], starts at T (Lin et al. 2024, Table 2).
- ``linspace``: round(linspace(1, T, n)).
- ``leading``: 1 + k * (T // n), k = 0..n-1 (the DDIM paper's code; never reaches T when T % n != 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BETA_MAX = 0.999


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """beta_n, n = 1..T, float64, shape (T,)."""
    scale = 1000.0 / T
    n = torch.arange(T, dtype=torch.float64)
    frac = n / max(T - 1, 1)
    return (scale * (beta_start + frac * (beta_end - beta_start))).clamp(max=BETA_MAX)


def cosine_alpha_bar(t: Tensor, s: float = 0.008) -> Tensor:
    """alpha_bar(t) of the cosine schedule for t in [0, 1] (float64)."""
    t = t.double()
    f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return f(t) / f(torch.zeros((), dtype=torch.float64))


def cosine_betas(T: int) -> Tensor:
    n = torch.arange(T + 1, dtype=torch.float64)
    ab = cosine_alpha_bar(n / T)
    return (1 - ab[1:] / ab[:-1]).clamp(min=0.0, max=BETA_MAX)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def schedule(name: str, T: int) -> dict[str, Tensor]:
    """The float64 tables of a discrete schedule, each of shape (T + 1,), index 0 = data.

    betas, alphas = 1 - betas, alpha_bar = prod_{k<=n} alphas,
    posterior_var = beta_tilde_n = (1 - alpha_bar_{n-1}) / (1 - alpha_bar_n) beta_n  (Ho et al. Eq. 7).
    """
    betas = torch.cat([torch.zeros(1, dtype=torch.float64), SCHEDULES[name](T)])
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, 0)
    post = torch.zeros_like(betas)
    post[1:] = (1 - alpha_bar[:-1]) / (1 - alpha_bar[1:]) * betas[1:]
    return {"betas": betas, "alphas": alphas, "alpha_bar": alpha_bar, "posterior_var": post}


def _trailing(T: int, n: int) -> list[int]:
    return [round(v) for v in torch.linspace(T, 0, n + 1, dtype=torch.float64).tolist()[:-1]]


def _linspace(T: int, n: int) -> list[int]:
    return [round(v) for v in torch.linspace(1, T, n, dtype=torch.float64).tolist()][::-1]


def _leading(T: int, n: int) -> list[int]:
    return [1 + k * (T // n) for k in range(n)][::-1]


SPACINGS = {"trailing": _trailing, "linspace": _linspace, "leading": _leading}


def timesteps(T: int, n: int, spacing: str = "trailing") -> list[tuple[int, int]]:
    """(tau_i, tau_{i-1}) pairs of an n-step DDIM pass, from the largest tau down to (tau_1, 0)."""
    if not 1 <= n <= T:
        raise ValueError(f"sampling steps must be in [1, {T}], got {n}")
    taus = SPACINGS[spacing](T, n)
    return list(zip(taus, taus[1:] + [0]))
