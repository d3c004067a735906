"""Entry point of the GAN family: registers its model ids."""

from unigen.plugin import ModelSpec, hookimpl

from .gan import GAN
from .stylegan import StyleGAN
from .wgan import WGAN
from .wgan_gp import WGANGP


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="gan", model_cls=GAN, description="DCGAN, non-saturating loss (Goodfellow et al. 2014; Radford et al. 2016)"))
    register(ModelSpec(id="wgan", model_cls=WGAN, description="Wasserstein GAN with weight clipping (Arjovsky et al. 2017)"))
    register(ModelSpec(id="wgan-gp", model_cls=WGANGP, description="WGAN with gradient penalty (Gulrajani et al. 2017)"))
    register(ModelSpec(id="stylegan", model_cls=StyleGAN, description="small StyleGAN2: mapping net, modulated convs (Karras et al. 2020)"))
