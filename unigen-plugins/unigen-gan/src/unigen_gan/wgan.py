"""Wasserstein GAN with weight clipping (Arjovsky et al. 2017).

The critic f (a linear output, no sigmoid) estimates the Kantorovich-Rubinstein dual of the
Wasserstein-1 distance, W(P_r, P_g) = sup_{||f||_L <= 1} E_{P_r} f(x) - E_{P_g} f(x) (Eq. 2):

    L_critic = E_z f(G(z)) - E_x f(x),      L_G = -E_z f(G(z))

f is kept K-Lipschitz by clipping every critic weight to [-c, c] after each critic step, c = 0.01;
the critic takes n_critic = 5 steps per generator step; RMSprop with lr 5e-5, because momentum
methods were unstable with this loss (Algorithm 1 and Sec. 3).

These are the defaults on images. On vectors the paper has no setting (the 2-D toy code of Gulrajani et
al. 2017, ``gan_toy.py``, keeps the image one); the latent takes the data's size and RMSprop stays (the
paper's reason holds), with lr 5e-4 decayed linearly, wgan-gp's lr on vectors. Measured on moons with
``unigen train wgan --data moons --steps N``: after 500 steps (MMD^2 with the median-heuristic bandwidth
of the pure-defaults test; untrained 0.75) the paper's constant 5e-5 gives 0.35, 2e-4 decayed linearly
0.66, 5e-4 decayed linearly 0.018; after 3,000 steps (MMD^2 to fresh moons; N(0, I) 0.12, a fitted
4-component Gaussian mixture 0.037) 5e-5 gives 0.046 and 5e-4 decayed linearly 0.038 (the command with
pure defaults, batch 128) and 0.015/0.022 (seeds 0/1, batch 256).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import Tensor

from unigen.plugin import positive_float, positive_int

from .base import Adversarial, AdversarialConfig


@attrs.frozen(kw_only=True)
class WGANConfig(AdversarialConfig):
    n_critic: int = positive_int(5)  # critic steps per generator step (Algorithm 1: 5)
    clip: float = positive_float(0.01)  # c of Algorithm 1


class WGAN(Adversarial):
    """Weight-clipped WGAN: the critic's losses, clipping after each critic step, n_critic 5, RMSprop with
    lr 5e-5 on images (Arjovsky et al. 2017, Algorithm 1); on vectors lr 5e-4 decayed linearly and a latent
    of the data's size. On moons with pure defaults, 3,000 steps of batch 256: MMD^2 0.015-0.022 against a
    fitted 4-component Gaussian mixture's 0.037 and N(0, I)'s 0.12 (module docstring)."""

    Config: ClassVar[type] = WGANConfig  # ClassVar[type]: WGAN-GP brings its own config (no clip)
    critic_group = "critic"

    @property
    def trainer_defaults(self) -> dict:  # type: ignore[override]
        """RMSprop: lr 5e-5 on images (Algorithm 1); on vectors 5e-4 decayed linearly (module docstring)."""
        if self.data.is_image:
            return {"lr": 5e-5, "optimizer": "rmsprop"}
        return {"lr": 5e-4, "optimizer": "rmsprop", "lr_schedule": "linear"}

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
