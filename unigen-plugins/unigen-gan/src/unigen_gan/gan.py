"""GAN with the DCGAN architecture and the non-saturating generator loss.

Goodfellow et al. 2014 (Eq. 1): min_G max_D E_x[log D(x)] + E_z[log(1 - D(G(z)))], with D(x) =
sigmoid(l(x)) for the discriminator's logit l. In terms of logits and softplus(a) = log(1 + e^a):

    L_D = E_x softplus(-l(x)) + E_z softplus(l(G(z)))        (binary cross-entropy, real = 1)
    L_G = E_z softplus(-l(G(z)))  = -E_z log D(G(z))          (the non-saturating loss, Sec. 3)

The non-saturating L_G has the same fixed point as the minimax one but strong gradients early in
training, when D rejects the fakes with confidence. Networks and optimizer are DCGAN's (Radford et
al. 2016): batch norm, weights initialised from N(0, 0.02^2) (:func:`unigen_gan.networks.dcgan_init`,
image networks only: the MLPs for vectors keep PyTorch's default), Adam with lr 2e-4 and beta1 = 0.5.
"""

from __future__ import annotations

import attrs
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Adversarial, AdversarialConfig
from .networks import dcgan_init


@attrs.frozen(kw_only=True)
class GANConfig(AdversarialConfig):
    """The shared adversarial fields as they are: one discriminator step per generator step."""


class GAN(Adversarial):
    Config = GANConfig
    trainer_defaults = {"lr": 2e-4, "betas": (0.5, 0.999)}  # DCGAN, Sec. 4

    def build_networks(self) -> tuple[nn.Module, nn.Module]:
        """The DCGAN networks with DCGAN's N(0, 0.02) initialisation (image data)."""
        g, d = super().build_networks()
        if self.data.is_image:
            g, d = dcgan_init(g), dcgan_init(d)
        return g, d

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake)).mean()

    def generator_loss(self, fake: Tensor) -> Tensor:
        return F.softplus(-self.discriminator(fake)).mean()
