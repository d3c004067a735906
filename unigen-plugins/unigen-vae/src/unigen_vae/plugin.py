"""Entry point of the VAE family: registers its model ids."""

from unigen.plugin import ModelSpec, hookimpl

from .quantized import FSQ, VQVAE
from .vae import VAE, BetaVAE


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="vae", model_cls=VAE, description="variational autoencoder (Kingma & Welling 2014)"))
    register(ModelSpec(id="beta-vae", model_cls=BetaVAE, description="VAE with a weighted KL (Higgins et al. 2017)"))
    register(ModelSpec(id="vq-vae", model_cls=VQVAE, description="vector-quantized autoencoder (van den Oord et al. 2017)"))
    register(ModelSpec(id="fsq", model_cls=FSQ, description="finite scalar quantization (Mentzer et al. 2023)"))
