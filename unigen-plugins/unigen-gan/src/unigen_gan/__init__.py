"""unigen's GAN family: GAN (DCGAN), WGAN, WGAN-GP and a small StyleGAN2.

Every model is trained by the generic trainer through two named parameter groups, the
discriminator (or critic) first and then the generator; see :mod:`unigen_gan.base`.
"""

from .base import Adversarial, AdversarialConfig
from .gan import GAN, GANConfig
from .stylegan import StyleGAN, StyleGANConfig
from .wgan import WGAN, WGANConfig
from .wgan_gp import WGANGP, WGANGPConfig, gradient_penalty

__all__ = [
    "GAN", "WGAN", "WGANGP", "Adversarial", "AdversarialConfig", "GANConfig", "StyleGAN", "StyleGANConfig",
    "WGANConfig", "WGANGPConfig", "gradient_penalty",
]
