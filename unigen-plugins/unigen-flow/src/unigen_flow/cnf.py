"""Continuous normalizing flow trained by maximum likelihood: FFJORD (Grathwohl et al. 2019).

The density of x is given by the instantaneous change of variables (Chen et al. 2018, Thm. 1), solved as
one augmented ODE from the data at t=0 to the base N(0, I) at t=1 (see :mod:`unigen_flow.ode`):

    log p(x) = log N(x(1); 0, I) + int_0^1 tr(dv/dx (x(t), t)) dt.

Training maximises it on (dequantized) data. On images the gradient comes from the adjoint method (Chen
et al. 2018, Sec. 2), as in FFJORD's code (torchdiffeq's ``odeint_adjoint``, rtol = atol = 1e-5): memory
stays constant in the number of solver steps. On 2-D vectors it backpropagates through the dopri5 solve
(``adjoint=True``/``False`` chooses either way). Measured on 8x8 digits, defaults (UNet width 32, batch 128,
rtol = atol = 1e-5), one CPU thread: backpropagation grew past 19.8 GB RSS; the adjoint peaks at 0.76 GB
but takes 218 s per step (44 evaluations forward, 284 in the backward solve); at rtol = atol = 1e-3 it
takes 41-81 s per step (76-130 evaluations), still hours for a brief CPU run: FFJORD on images is a GPU model. The forward solve alone (44 evaluations)
took 105 s at 1.28 GB on 28x28 fashion-mnist and 147 s at 1.41 GB on 32x32 shapes (backward not finished
within 240 s). The trace is Hutchinson's
estimator eps^T (dv/dx) eps with one Rademacher eps per solve (FFJORD Eq. 7), which keeps the cost at one
vector-Jacobian product per evaluation; for low dimension (D <= 16, or ``trace="exact"``) it is the exact
trace. Sampling integrates back from t=1 to t=0 with the configured sampler, adaptive dopri5 by default.
"""

from __future__ import annotations

import attrs
from torch import Tensor

from unigen import DataInfo
from unigen.plugin import Batch, dequantize, positive_int, sampler

from .ode import ODEFlow, ODEFlowConfig


@attrs.frozen(kw_only=True)
class CNFConfig(ODEFlowConfig):
    hidden: int = positive_int(64)  # MLP width
    # The likelihood already needs the adaptive solver; sampling with it keeps samples exact to tolerance.
    sampler: str = sampler("dopri5", "ode")


class CNF(ODEFlow):
    data_kinds = ("vector", "image")  # images work, but the solve per step is slow on a CPU
    Config = CNFConfig
    default_steps = 100  # only for fixed-step samplers; dopri5 is adaptive
    trainer_defaults = {"lr": 1e-3}

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """Negative log-likelihood (exact-to-tolerance, or Hutchinson-estimated trace), nats per dim."""
        x = dequantize(batch.x, self.data.levels)
        return -self.log_density(x).mean() / self.data.dim

    @classmethod
    def example_config(cls, data: DataInfo, workdir) -> CNFConfig:
        return CNFConfig(hidden=16, depth=2, width=8, rtol=1e-3, atol=1e-3)
