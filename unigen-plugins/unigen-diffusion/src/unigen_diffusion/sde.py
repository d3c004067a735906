"""The forward SDEs of Song et al. 2021b (Sec. 3.4), as pure functions of t in [0, 1] (float64).

VP:  dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW,  beta(t) = beta_min + t (beta_max - beta_min)
     x_t | x_0 ~ N(m(t) x_0, (1 - m(t)^2) I),  m(t) = exp(-1/2 int_0^t beta) = exp(-1/2 B(t)),
     B(t) = beta_min t + t^2 (beta_max - beta_min) / 2                               (Eq. 29)
VE:  dx = sqrt(d sigma^2/dt) dW = sigma(t) sqrt(2 log(sigma_max / sigma_min)) dW,
     sigma(t) = sigma_min (sigma_max / sigma_min)^t  (geometric),
     x_t | x_0 ~ N(x_0, (sigma(t)^2 - sigma(0)^2) I)                                 (Eq. 29)

Each returns tensors of t's shape; callers broadcast.
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor


@attrs.frozen
class VPSDE:
    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t.double() * (self.beta_max - self.beta_min)

    def int_beta(self, t: Tensor) -> Tensor:
        t = t.double()
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(mean coefficient m(t), standard deviation) of x_t given x_0."""
        b = self.int_beta(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def drift_coef(self, t: Tensor) -> Tensor:
        """f(x, t) = drift_coef(t) * x."""
        return -0.5 * self.beta(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def langevin_alpha(self, t: Tensor, steps: int) -> Tensor:
        """alpha_i = 1 - beta_i of the discretised chain, beta_i = beta(t) / steps (Song et al.'s corrector)."""
        return 1 - self.beta(t) / steps


@attrs.frozen
class VESDE:
    sigma_min: float = 0.01
    sigma_max: float = 10.0

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t.double()

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        var = self.sigma(t) ** 2 - self.sigma_min**2
        return torch.ones_like(var), var.clamp_min(0).sqrt()

    def drift_coef(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t, dtype=torch.float64)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))

    def langevin_alpha(self, t: Tensor, steps: int) -> Tensor:
        return torch.ones_like(t, dtype=torch.float64)
