"""Building blocks that are the same in every family: MLP, conv encoder/decoder, a small UNet,
time embeddings and a transformer block. Family-specific layers live in their
family's package."""

from .blocks import (
    MLP,
    ConvDecoder,
    ConvEncoder,
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
    "sinusoidal_embedding",
]
