"""Building blocks that are the same in every family: MLP, conv encoder/decoder, a small UNet,
time embeddings, a transformer block and a masked convolution. Family-specific layers live in their
family's package."""

from .blocks import (
    MLP,
    ConvDecoder,
    ConvEncoder,
    MaskedConv2d,
    TimeEmbedding,
    TransformerBlock,
    UNet,
    sinusoidal_embedding,
)

__all__ = [
    "MLP",
    "ConvEncoder",
    "ConvDecoder",
    "UNet",
    "TimeEmbedding",
    "TransformerBlock",
    "MaskedConv2d",
    "sinusoidal_embedding",
]
