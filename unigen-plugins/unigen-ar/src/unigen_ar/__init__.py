"""unigen's autoregressive family: Gated PixelCNN and a GPT-style transformer over pixels."""

from .base import ARModel, sample_level
from .pixelcnn import PixelCNN, PixelCNNConfig
from .transformer import TransformerAR, TransformerARConfig

__all__ = ["ARModel", "PixelCNN", "PixelCNNConfig", "TransformerAR", "TransformerARConfig", "sample_level"]
