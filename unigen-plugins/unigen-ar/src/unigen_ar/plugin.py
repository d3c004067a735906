"""Entry point of the autoregressive family: registers its model ids."""

from unigen.plugin import ModelSpec, hookimpl

from .pixelcnn import PixelCNN
from .transformer import TransformerAR


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="pixelcnn", model_cls=PixelCNN,
                       description="Gated PixelCNN, softmax over the K levels (van den Oord et al. 2016)"))
    register(ModelSpec(id="transformer-ar", model_cls=TransformerAR,
                       description="GPT-style decoder over pixels in raster order, KV-cached sampling"))
