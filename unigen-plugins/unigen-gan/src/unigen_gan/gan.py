"""GAN with the DCGAN architecture and the non-saturating generator loss.

Goodfellow et al. 2014 (Eq. 1): min_G max_D E_x[log D(x)] + E_z[log(1 - D(G(z)))], with D(x) =
sigmoid(l(x)) for the discriminator's logit l. In terms of logits and softplus(a) = log(1 + e^a):

    L_D = E_x softplus(-l(x)) + E_z softplus(l(G(z)))        (binary cross-entropy, real = 1)
    L_G = E_z softplus(-l(G(z)))  = -E_z log D(G(z))          (the non-saturating loss, Sec. 3)

The non-saturating L_G has the same fixed point as the minimax one but strong gradients early in
training, when D rejects the fakes with confidence. Networks and optimizer are DCGAN's (Radford et
al. 2016): batch norm, weights initialised from N(0, 0.02^2) (:func:`unigen_gan.networks.dcgan_init`,
image networks only: the MLPs for vectors keep PyTorch's default), Adam with lr 2e-4 and beta1 = 0.5.

On vectors (no DCGAN setting exists) the optimizer is that of the family's 2-D toy experiments (Gulrajani
et al. 2017, ``gan_toy.py``): Adam betas (0.5, 0.9), here with lr 1e-3 decayed linearly to zero, a latent
of the data's size, and the R1 penalty on reals (Mescheder et al. 2018, Eq. 9; the unregularised GAN
does not converge on such data, their Sec. 3):

    L_D += gamma / 2 * E_x ||grad_x l(x)||^2,      gamma = ``r1_gamma`` (vectors: 1; images: 0, as DCGAN)

Measured on moons, batch 128, MMD^2 against fresh moons (N(0, I) scores 0.12, a fitted 4-component
Gaussian mixture 0.037): after 3,000 steps DCGAN's optimizer with a 32-D latent oscillates between modes
(0.41; 0.92 with a 2-D latent); gan_toy's constant lr 1e-4 reached 0.005 and 0.015 on seeds 0-1 but
0.37 on seed 2; lr 1e-3 decayed linearly 0.0006-0.0025 on seeds 0-2 without R1, 0.003/0.013 (seeds 0/1)
with gamma 1 and 0.005 (seed 0) with gamma 0.1. After 500 steps the same run without R1 is still
oscillating (1.34), with gamma 1 it reaches 0.014/0.023 (seeds 0/1; gamma 0.1: 0.020/0.028).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unigen.plugin import nonnegative_float

from .base import Adversarial, AdversarialConfig
from .networks import dcgan_init


@attrs.frozen(kw_only=True)
class GANConfig(AdversarialConfig):
    """The shared adversarial fields, one discriminator step per generator step, and the R1 weight."""

    # gamma of the R1 penalty on reals; None: by the data (GAN.r1_gamma): 0 for images (DCGAN has none), 1 for vectors.
    r1_gamma: float | None = nonnegative_float(None, optional=True)


class GAN(Adversarial):
    """The non-saturating GAN with DCGAN's networks, initialisation and optimizer on images; on vectors
    MLPs, a latent of the data's size, R1 with gamma 1 and Adam (0.5, 0.9) with lr 1e-3 decayed linearly
    (module docstring). With pure defaults, ``unigen train gan --data moons --steps 3000``: MMD^2 0.003
    against fresh moons (N(0, I): 0.12; DCGAN's optimizer with the former 32-D latent: 0.41). On 8x8 digits,
    600 steps: pixel MMD^2 0.007 against a fitted 4-component Gaussian mixture's 0.026."""

    Config: ClassVar[type] = GANConfig  # ClassVar[type]: a variant (StyleGAN) brings its own config

    @property
    def trainer_defaults(self) -> dict:  # type: ignore[override]
        """DCGAN's Adam (Sec. 4) for images; for vectors Adam (0.5, 0.9), lr 1e-3 decayed linearly (measured)."""
        if self.data.is_image:
            return {"lr": 2e-4, "betas": (0.5, 0.999)}
        return {"lr": 1e-3, "betas": (0.5, 0.9), "lr_schedule": "linear"}

    def build_networks(self) -> tuple[nn.Module, nn.Module]:
        """The DCGAN networks with DCGAN's N(0, 0.02) initialisation (image data)."""
        g, d = super().build_networks()
        if self.data.is_image:
            g, d = dcgan_init(g), dcgan_init(d)
        return g, d

    @property
    def r1_gamma(self) -> float:
        """gamma of the R1 penalty: the config's, or 0 for images and 1 for vectors (module docstring)."""
        if self.config.r1_gamma is not None:
            return self.config.r1_gamma
        return 0.0 if self.data.is_image else 1.0

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """L_D plus (gamma / 2) E ||grad_x l(x)||^2 on reals, from the same pass over the reals."""
        gamma = self.r1_gamma
        x = real.detach().requires_grad_(gamma > 0)
        real_logits = self.discriminator(x)  # (B,)
        loss = F.softplus(-real_logits).mean() + F.softplus(self.discriminator(fake)).mean()
        if gamma == 0:
            return loss
        (grad,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)  # (B, *D)
        return loss + 0.5 * gamma * grad.flatten(1).pow(2).sum(1).mean()

    def generator_loss(self, fake: Tensor) -> Tensor:
        return F.softplus(-self.discriminator(fake)).mean()
