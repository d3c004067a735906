"""Stochastic interpolants (Albergo, Boffi & Vanden-Eijnden 2023, "Stochastic Interpolants: A Unifying
Framework for Flows and Diffusions"), in unigen's convention: x_0 is data at t=0, x_1 ~ N(0, I) at t=1.

The interpolant I_t = alpha_t x_0 + beta_t x_1 + gamma_t eps (schedules in :mod:`.interpolants`) has the
time-dependent density rho_t; the velocity b(t, x) = E[dI_t/dt | I_t = x] transports rho_1 = N(0, I) to
the data (their Thm. 2.6). It is learned by the quadratic objective (their Eq. 2.13)

    L_b = E_{t, x_0, x_1, eps} || v_theta(I_t, t) - dI_t/dt ||^2,

so with ``linear`` and gamma = 0 this is exactly conditional flow matching (target x_1 - x_0).

When gamma != 0 a second head eta_theta learns the denoiser of the Gaussian part. With x_1 Gaussian,
g_t = beta_t x_1 + gamma_t eps ~ N(0, sigma_t^2 I), sigma_t^2 = beta_t^2 + gamma_t^2, and the score is
s(t, x) = -E[g_t | I_t = x] / sigma_t^2 (their Eq. 2.16 with z = g_t / sigma_t), learned as

    L_eta = E || eta_theta(I_t, t) - g_t / sigma_t ||^2,     s = -eta / sigma_t.

Sampling runs a registered solver from t=1 to t=t_min (0, or the schedule's t_min):
- an ODE solver on dX = b dt (the probability-flow ODE),
- an SDE solver on the backward SDE (their Eq. 2.33) dX = (b - eps_t s) dt + sqrt(2 eps_t) dW, which
  has the same marginals for any eps_t >= 0. We take eps_t = ``sde_eps`` * sigma_t^2, so that
  eps_t s = -sde_eps sigma_t eta stays finite where sigma_t -> 0 (no division by sigma).

``logprob`` is not offered: the probability-flow likelihood of an interpolant is the flow family's
ODE change of variables (``flow-matching`` covers the linear path).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v
from torch import Tensor

from unigen import DataInfo, UnigenError
from unigen.plugin import Batch, GenerativeModel, broadcast_t, get_sampler, nonnegative_float, positive_int, sampler

from .interpolants import get_schedule
from .networks import TimeField


def _schedule_name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    try:
        get_schedule(value)
    except UnigenError as exc:
        raise ValueError(f"'schedule' = {value!r}: {exc}") from None





@attrs.frozen(kw_only=True)
class StochasticInterpolantConfig:
    # alpha_t, beta_t: a registered interpolant schedule (linear, trig, vp, or a plugin's; see interpolants.py).
    schedule: str = attrs.field(default="linear", validator=[v.instance_of(str), _schedule_name])
    # a in gamma_t = a t (1 - t); a > 0 adds the latent noise term and trains the denoiser head.
    gamma: float = nonnegative_float(0.0)
    # A registered sampler: ODE (euler, heun, rk4, dopri5) or SDE (euler-maruyama, needs gamma > 0).
    sampler: str = sampler("heun")
    # eps_t = sde_eps * sigma_t^2 in the backward SDE; 0 makes the SDE the probability-flow ODE.
    sde_eps: float = nonnegative_float(1.0)
    hidden: int = positive_int(128)  # MLP width (vectors)
    depth: int = positive_int(3)  # MLP hidden layers
    width: int = positive_int(32)  # UNet channels (images)

    @sampler.validator
    def _sde_needs_gamma(self, attribute: Any, value: str) -> None:
        if get_sampler(value).kind == "sde" and self.gamma == 0:
            raise ValueError(f"'sampler' = {value!r} is an SDE solver: it needs the learned score, trained only "
                             "when 'gamma' > 0 (set gamma=1.0, or pick an ODE sampler)")


class StochasticInterpolant(GenerativeModel):
    family = "unified"
    paradigm = "flow"
    logprob_kind = "none"
    no_logprob_reason = ("its likelihood is the probability-flow ODE's change of variables, which this model "
                         "does not compute (the flow family's flow-matching does, for the linear path)")
    Config = StochasticInterpolantConfig
    default_steps = 50
    data_kinds = ("vector", "image")
    trainer_defaults = {"lr": 1e-3}

    def __init__(self, config: StochasticInterpolantConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.interpolant = get_schedule(config.schedule, config.gamma)
        self.with_score = config.gamma > 0
        self.net = TimeField(data, heads=2 if self.with_score else 1, hidden=config.hidden, depth=config.depth,
                             width=config.width)

    # -- networks ---------------------------------------------------------------------------------
    def fields(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """(v_theta, eta_theta or None) at (x, t); each (B, *D)."""
        out = self.net(x, t)  # (B, heads, *D)
        return out[:, 0], (out[:, 1] if self.with_score else None)

    def targets(self, x0: Tensor, t: Tensor) -> dict[str, Tensor]:
        """I_t, dI_t/dt and (when gamma > 0) the denoiser target g_t / sigma_t for data x0 (B, *D), t (B,)."""
        x1, eps = torch.randn_like(x0), torch.randn_like(x0)
        it, dit = self.interpolant.interpolate(x0, x1, eps, t)
        out = {"x1": x1, "eps": eps, "it": it, "dit": dit}
        if self.with_score:
            cb, cg = (broadcast_t(c, x0) for c in self.interpolant.noise_direction(t))
            out["z"] = cb * x1 + cg * eps  # (b x1 + g eps) / sigma, its limit where sigma = 0
        return out

    def sample_times(self, n: int, device: Any, dtype: torch.dtype) -> Tensor:
        t_min = self.interpolant.t_min
        return t_min + (1 - t_min) * torch.rand(n, device=device, dtype=dtype)

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """L_b (+ L_eta when gamma > 0), each averaged over examples and dimensions."""
        x0 = batch.x
        t = self.sample_times(x0.shape[0], x0.device, x0.dtype)
        tg = self.targets(x0, t)
        vel, eta = self.fields(tg["it"], t)
        loss = (vel - tg["dit"]).pow(2).mean()
        if eta is not None:
            loss = loss + (eta - tg["z"]).pow(2).mean()
        return loss

    # -- the operations -----------------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """A draw of I_t given x_0 = x (t=1 when None): the forward (noising) process."""
        if t is None:
            t = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
        return self.targets(x, t.to(x.dtype))["it"]

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """b_theta(x, t) = v_theta: the probability-flow ODE field."""
        return self.fields(x, t)[0]

    def backward_sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(b - eps_t s, sqrt(2 eps_t)) with eps_t = sde_eps sigma_t^2 and s = -eta / sigma_t."""
        vel, eta = self.fields(x, t)
        sigma = broadcast_t(self.interpolant.noise_std(t), x)
        c = self.config.sde_eps
        return vel + c * sigma * eta, (2 * c) ** 0.5 * sigma

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Integrate from t=1 (z ~ N(0, I)) to t=t_min with the configured registered sampler."""
        spec = get_sampler(self.config.sampler, host=self.host)
        fn = self.backward_sde if spec.kind == "sde" else self.drift
        return spec.solve(fn, z, steps or self.default_steps, t_start=1.0, t_end=self.interpolant.t_min)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype), steps)

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> StochasticInterpolantConfig:
        return StochasticInterpolantConfig(hidden=32, depth=2, width=8)
