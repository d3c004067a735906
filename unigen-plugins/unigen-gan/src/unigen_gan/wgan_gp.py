"""WGAN with gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs").

Instead of clipping weights, the critic's 1-Lipschitz constraint is enforced softly on points
x_hat = eps x + (1 - eps) x_tilde between a real x and a fake x_tilde, eps ~ U[0, 1] (Algorithm 1,
lines 4-7):

    L_critic = E f(x_tilde) - E f(x) + lambda E_{x_hat} (||grad_{x_hat} f(x_hat)||_2 - 1)^2,   lambda = 10
    L_G      = -E f(G(z))

The critic has no batch normalization (the penalty is per example; layer norm is used instead,
Sec. 4); n_critic = 5; Adam with lr 1e-4, beta1 = 0, beta2 = 0.9 (Algorithm 1's defaults).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from unigen.plugin import nonnegative_float, positive_int

from .base import Adversarial, AdversarialConfig
from .wgan import WGAN


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor | None = None,
                     weight: float = 10.0) -> Tensor:
    """lambda E (||grad f(x_hat)||_2 - 1)^2 with x_hat = eps x + (1 - eps) x_tilde.

    real, fake: (B, *D); eps: (B,) in [0, 1], drawn uniformly when None. Returns a scalar that keeps
    its graph (create_graph=True), so the penalty's gradient reaches the critic's weights.
    """
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    e = eps.view(-1, *([1] * (real.dim() - 1)))  # (B, 1, ..., 1)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)  # (B, *D)
    return weight * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@attrs.frozen(kw_only=True)
class WGANGPConfig(AdversarialConfig):
    n_critic: int = positive_int(5)
    gp_weight: float = nonnegative_float(10.0)  # lambda


class WGANGP(WGAN):
    """WGAN's losses plus the gradient penalty; no weight clipping."""

    Config = WGANGPConfig
    data_kinds = ("vector", "image")
    trainer_defaults = {"lr": 1e-4, "betas": (0.0, 0.9)}

    def discriminator_norm(self) -> str:
        return "layer"

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        gp = gradient_penalty(self.discriminator, real, fake, weight=self.config.gp_weight)
        return super().discriminator_loss(real, fake) + gp

    after_step = Adversarial.after_step  # the penalty replaces clipping
