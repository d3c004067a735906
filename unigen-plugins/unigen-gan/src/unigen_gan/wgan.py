"""Wasserstein GAN with weight clipping (Arjovsky et al. 2017).

The critic f (a linear output, no sigmoid) estimates the Kantorovich-Rubinstein dual of the
Wasserstein-1 distance, W(P_r, P_g) = sup_{||f||_L <= 1} E_{P_r} f(x) - E_{P_g} f(x) (Eq. 2):

    L_critic = E_z f(G(z)) - E_x f(x),      L_G = -E_z f(G(z))

f is kept K-Lipschitz by clipping every critic weight to [-c, c] after each critic step, c = 0.01;
the critic takes n_critic = 5 steps per generator step; RMSprop with lr 5e-5, because momentum
methods were unstable with this loss (Algorithm 1 and Sec. 3).
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from unigen.plugin import positive_float, positive_int

from .base import Adversarial, AdversarialConfig


@attrs.frozen(kw_only=True)
class WGANConfig(AdversarialConfig):
    n_critic: int = positive_int(5)  # Algorithm 1
    clip: float = positive_float(0.01)  # c of Algorithm 1


class WGAN(Adversarial):
    Config = WGANConfig
    critic_group = "critic"
    trainer_defaults = {"lr": 5e-5, "optimizer": "rmsprop"}

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return self.discriminator(fake).mean() - self.discriminator(real).mean()

    def generator_loss(self, fake: Tensor) -> Tensor:
        return -self.discriminator(fake).mean()

    def after_step(self, group: str, step: int) -> None:
        """Weight clipping, w <- clip(w, -c, c), of every critic parameter after a critic step."""
        if group == self.critic_group:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.config.clip, self.config.clip)
