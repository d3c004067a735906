"""Conditional flow matching with the linear (optimal-transport) path (Lipman et al. 2023; Liu et al. 2023;
Albergo & Vanden-Eijnden 2023), in unigen's time convention: x_0 is data at t=0, x_1 ~ N(0, I) at t=1.

Lipman et al.'s OT path (their Eq. 20-23, noise at t=0) rewritten with s = 1 - t:

    x_t = (1 - t) x_0 + (sigma_min + (1 - sigma_min) t) x_1,
    u_t(x_t | x_0, x_1) = dx_t/dt = (1 - sigma_min) x_1 - x_0,

so sigma_min = 0 is the straight line x_t = (1 - t) x_0 + t x_1 with target x_1 - x_0. The loss is the
conditional flow matching objective (Lipman Eq. 9)

    L = E_{t ~ U[0, 1], x_0 ~ data, x_1 ~ N(0, I)} || v_theta(x_t, t) - u_t ||^2,

whose minimiser is the marginal velocity field that carries N(0, I) at t=1 to the data at t=0.
Sampling integrates dx/dt = v_theta from t=1 to t=0 with a registered sampler (``sampler``: euler, heun,
rk4 at ``--steps``, or adaptive dopri5). ``logprob`` is the instantaneous change of variables of
:mod:`unigen_flow.ode`: exact up to the solver tolerance with the exact trace; above 16 dimensions (every
image) the trace is Hutchinson's one-probe estimate unless ``trace="exact"``, and the model reports
``logprob_kind = "estimate"``.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from unigen import DataInfo
from unigen.plugin import Batch, broadcast_t, dequantize, flag, fraction

from .ode import ODEFlow, ODEFlowConfig


def interpolate(x0: Tensor, x1: Tensor, t: Tensor, sigma_min: float = 0.0) -> Tensor:
    """x_t = (1 - t) x_0 + (sigma_min + (1 - sigma_min) t) x_1. x0, x1: (B, *D), t: (B,)."""
    tb = broadcast_t(t, x0)
    return (1 - tb) * x0 + (sigma_min + (1 - sigma_min) * tb) * x1


def target_velocity(x0: Tensor, x1: Tensor, sigma_min: float = 0.0) -> Tensor:
    """u_t = d x_t / dt = (1 - sigma_min) x_1 - x_0 (independent of t for the linear path)."""
    return (1 - sigma_min) * x1 - x0


@attrs.frozen(kw_only=True)
class FlowMatchingConfig(ODEFlowConfig):
    # A small sigma_min keeps the t=0 marginal a slightly smoothed data density (Lipman et al.).
    sigma_min: float = fraction(1e-4)
    # Train on uniformly dequantized images, so logprob is a density matching the NLL metric's convention.
    dequantize: bool = flag(True)


class FlowMatching(ODEFlow):
    Config = FlowMatchingConfig
    default_steps = 20
    trainer_defaults = {"lr": 1e-3}

    def pairs(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The coupling (x_0, x_1) for one batch: data and independent noise."""
        x0 = dequantize(batch.x, self.data.levels) if self.config.dequantize else batch.x
        return x0, torch.randn_like(x0)

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """|| v_theta(x_t, t) - u_t ||^2, averaged over examples and dimensions."""
        x0, x1 = self.pairs(batch)
        t = torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype)
        xt = interpolate(x0, x1, t, self.config.sigma_min)
        u = target_velocity(x0, x1, self.config.sigma_min)
        return (self.velocity(xt, t) - u).pow(2).mean()

    @classmethod
    def example_config(cls, data: DataInfo, workdir) -> FlowMatchingConfig:
        return FlowMatchingConfig(hidden=32, depth=2, width=8, rtol=1e-3, atol=1e-3)
