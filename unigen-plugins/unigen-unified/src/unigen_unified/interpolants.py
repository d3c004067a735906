"""Interpolant schedules for stochastic interpolants (Albergo, Boffi & Vanden-Eijnden 2023, Def. 2.1),
registered by name.

In unigen's time convention (t=0 data, t=1 noise) the interpolant between a data point x_0 and a
Gaussian x_1 ~ N(0, I), with an independent latent eps ~ N(0, I), is

    I_t = alpha_t x_0 + beta_t x_1 + gamma_t eps,
    alpha_0 = beta_1 = 1,  alpha_1 = beta_0 = 0,  gamma_0 = gamma_1 = 0,

so I_0 = x_0 and I_1 = x_1 exactly. Its time derivative, the velocity target of the loss, is

    dI_t/dt = alpha'_t x_0 + beta'_t x_1 + gamma'_t eps

with every derivative written in closed form (no finite differences; the tests compare it with
autograd). gamma_t = a t (1 - t) for every schedule here, with ``a`` the config's ``gamma``.

=========  ==========================================================================================
``linear``  alpha = 1 - t, beta = t: flow matching / rectified flow; dI/dt = x_1 - x_0 when a = 0
``trig``    alpha = cos(pi t / 2), beta = sin(pi t / 2): the variance-preserving trigonometric path
            (Albergo et al. Sec. 4; Albergo & Vanden-Eijnden 2023)
``vp``      the VP-SDE / DDPM path (Song et al. 2021): alpha = exp(-B(t)/2), beta = sqrt(1 - e^{-B(t)}),
            B(t) = int_0^t (b_min + s (b_max - b_min)) ds, b_min = 0.1, b_max = 20, each rescaled by its
            value at t=1 so the endpoints are hit exactly (alpha_1 = e^{-5.03} = 0.0066 otherwise).
            beta'_t ~ 1/sqrt(t) at t=0, so this path trains and samples on [t_min, 1], t_min = 1e-3,
            as score SDEs do.
=========  ==========================================================================================

Schedules are pure functions of t computed in float64 and cast back to t's dtype. Another plugin adds
a schedule with :func:`register_schedule` or, without importing this package, through the entry-point
group ``unigen_unified.interpolants`` (``name = "module:Class"``); an unknown name fails with the list
of known ones.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from importlib.metadata import entry_points
from typing import ClassVar

import attrs
import torch
from torch import Tensor

from unigen import UnknownId
from unigen.plugin import broadcast_t, nonnegative_float

ENTRY_POINT_GROUP = "unigen_unified.interpolants"


@attrs.frozen(kw_only=True)
class Interpolant(ABC):
    """Base class: a variant overrides ``alpha``, ``beta`` and their derivatives (and ``t_min``).

    All methods take t, ``Tensor, shape (B,)``, and return a tensor of the same shape and dtype.
    """

    # Amplitude a of the latent term gamma_t = a t (1 - t); 0 gives a deterministic interpolant.
    gamma_scale: float = nonnegative_float(0.0)
    # Smallest time used for training and reached by sampling (0 unless a derivative is singular at 0).
    t_min: ClassVar[float] = 0.0

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """alpha_t, the coefficient of the data point x_0."""

    @abstractmethod
    def beta(self, t: Tensor) -> Tensor:
        """beta_t, the coefficient of the Gaussian x_1."""

    @abstractmethod
    def dalpha(self, t: Tensor) -> Tensor:
        """d alpha / dt."""

    @abstractmethod
    def dbeta(self, t: Tensor) -> Tensor:
        """d beta / dt."""

    def gamma(self, t: Tensor) -> Tensor:
        return self.gamma_scale * t * (1 - t)

    def dgamma(self, t: Tensor) -> Tensor:
        return self.gamma_scale * (1 - 2 * t)

    # -- written once --------------------------------------------------------------------------
    def coefficients(self, t: Tensor) -> tuple[Tensor, ...]:
        """(alpha, beta, gamma, alpha', beta', gamma') at t, computed in float64, cast to t's dtype."""
        td = t.double()
        out = (self.alpha(td), self.beta(td), self.gamma(td), self.dalpha(td), self.dbeta(td), self.dgamma(td))
        return tuple(c.to(t.dtype) for c in out)

    def interpolate(self, x0: Tensor, x1: Tensor, eps: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(I_t, dI_t/dt). x0, x1, eps: (B, *D); t: (B,)."""
        a, b, g, da, db, dg = (broadcast_t(c, x0) for c in self.coefficients(t))
        return a * x0 + b * x1 + g * eps, da * x0 + db * x1 + dg * eps

    def noise_direction(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(beta_t, gamma_t) / sigma_t, so that g_t / sigma_t = c_b x_1 + c_g eps; each (B,).

        At t=0 both beta and gamma vanish and the quotient is 0/0; its limit t -> 0+ is the
        direction of the first derivatives (beta'_0, gamma'_0) (l'Hopital), taken as (1, 0) when
        beta'_0 is infinite (the VP path, beta ~ sqrt(t)). ``torch.rand`` returns exactly 0 about
        once in 3e7 draws, so the limit matters in long runs.
        """
        td = t.double()
        b, g, db, dg = self.beta(td), self.gamma(td), self.dbeta(td), self.dgamma(td)
        inf_b, inf_g = db.isinf(), dg.isinf()
        either = inf_b | inf_g
        # an infinite derivative dominates the finite one: its component of the direction is +-1
        db = torch.where(either, inf_b.double() * db.sign(), db)
        dg = torch.where(either, inf_g.double() * dg.sign(), dg)
        sigma = torch.hypot(b, g)
        at_zero = sigma == 0
        num_b, num_g = torch.where(at_zero, db, b), torch.where(at_zero, dg, g)
        norm = torch.hypot(num_b, num_g)
        return (num_b / norm).to(t.dtype), (num_g / norm).to(t.dtype)

    def noise_std(self, t: Tensor) -> Tensor:
        """sigma_t = sqrt(beta_t^2 + gamma_t^2): the std of the Gaussian part beta_t x_1 + gamma_t eps."""
        _, b, g, *_ = self.coefficients(t)
        return (b * b + g * g).sqrt()


@attrs.frozen(kw_only=True)
class Linear(Interpolant):
    """alpha = 1 - t, beta = t (flow matching's straight path)."""

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def beta(self, t: Tensor) -> Tensor:
        return t

    def dalpha(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def dbeta(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)


@attrs.frozen(kw_only=True)
class Trig(Interpolant):
    """alpha = cos(pi t / 2), beta = sin(pi t / 2): alpha^2 + beta^2 = 1 (variance preserving)."""

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(math.pi / 2 * t)

    def beta(self, t: Tensor) -> Tensor:
        return torch.sin(math.pi / 2 * t)

    def dalpha(self, t: Tensor) -> Tensor:
        return -math.pi / 2 * torch.sin(math.pi / 2 * t)

    def dbeta(self, t: Tensor) -> Tensor:
        return math.pi / 2 * torch.cos(math.pi / 2 * t)


@attrs.frozen(kw_only=True)
class VP(Interpolant):
    """The VP-SDE path (Song et al. 2021, Eq. 33 marginal), rescaled to hit both endpoints exactly:

        alpha_t = (e^{-B(t)/2} - e^{-B(1)/2}) / (1 - e^{-B(1)/2}),
        beta_t  = sqrt(1 - e^{-B(t)}) / sqrt(1 - e^{-B(1)}),
        B(t) = b_min t + (b_max - b_min) t^2 / 2,  B'(t) = b_min + (b_max - b_min) t.
    """

    b_min: ClassVar[float] = 0.1
    b_max: ClassVar[float] = 20.0
    t_min: ClassVar[float] = 1e-3

    def _B(self, t: Tensor) -> Tensor:
        return self.b_min * t + 0.5 * (self.b_max - self.b_min) * t * t

    def _dB(self, t: Tensor) -> Tensor:
        return self.b_min + (self.b_max - self.b_min) * t

    def _ends(self) -> tuple[float, float]:
        b1 = self.b_min + 0.5 * (self.b_max - self.b_min)
        return math.exp(-b1 / 2), math.sqrt(1 - math.exp(-b1))

    def alpha(self, t: Tensor) -> Tensor:
        a1, _ = self._ends()
        return (torch.exp(-self._B(t) / 2) - a1) / (1 - a1)

    def beta(self, t: Tensor) -> Tensor:
        _, s1 = self._ends()
        return torch.sqrt(-torch.expm1(-self._B(t))) / s1

    def dalpha(self, t: Tensor) -> Tensor:
        a1, _ = self._ends()
        return -0.5 * self._dB(t) * torch.exp(-self._B(t) / 2) / (1 - a1)

    def dbeta(self, t: Tensor) -> Tensor:
        _, s1 = self._ends()
        B = self._B(t)
        return self._dB(t) * torch.exp(-B) / (2 * torch.sqrt(-torch.expm1(-B))) / s1


_SCHEDULES: dict[str, type] = {"linear": Linear, "trig": Trig, "vp": VP}
_loaded_entry_points = False


def register_schedule(name: str, cls: type) -> None:
    """Add a schedule class (called as ``cls(gamma_scale=a)``); a duplicate name is refused."""
    if name in _SCHEDULES and _SCHEDULES[name] is not cls:
        raise ValueError(f"interpolant schedule {name!r} is already registered ({_SCHEDULES[name].__qualname__})")
    _SCHEDULES[name] = cls


def _load_entry_points() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        register_schedule(ep.name, ep.load())


def schedule_names() -> list[str]:
    _load_entry_points()
    return sorted(_SCHEDULES)


def get_schedule(name: str, gamma_scale: float = 0.0) -> Interpolant:
    """The schedule registered as ``name`` with latent amplitude ``gamma_scale``."""
    _load_entry_points()
    if name not in _SCHEDULES:
        raise UnknownId(f"unknown interpolant schedule {name!r}; known: {', '.join(sorted(_SCHEDULES))}")
    return _SCHEDULES[name](gamma_scale=gamma_scale)
