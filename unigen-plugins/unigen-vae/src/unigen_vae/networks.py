"""Encoders and decoders of the family: conv for images, MLP for vectors."""

from __future__ import annotations

from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import MLP, ConvDecoder, ConvEncoder


def encoder(data: DataInfo, out_dim: int, width: int, hidden: int) -> nn.Module:
    """(B, *D) -> (B, out_dim)."""
    if data.is_image:
        return ConvEncoder(data.shape, out_dim, width=width)
    return MLP([data.dim, hidden, hidden, out_dim])


class _VectorDecoder(nn.Module):
    def __init__(self, data: DataInfo, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = MLP([in_dim, hidden, hidden, 2 * data.dim])
        self.shape = data.shape

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], 2, *self.shape)  # (B, 2, *D)


class _ImageDecoder(nn.Module):
    def __init__(self, data: DataInfo, in_dim: int, width: int) -> None:
        super().__init__()
        c = data.shape[0]
        self.net = ConvDecoder(data.shape, in_dim, width=width, out_channels=2 * c)
        self.c = c

    def forward(self, z: Tensor) -> Tensor:
        out = self.net(z)  # (B, 2C, H, W)
        return out.view(out.shape[0], 2, self.c, *out.shape[2:])  # (B, 2, C, H, W)


def decoder(data: DataInfo, in_dim: int, width: int, hidden: int) -> nn.Module:
    """(B, in_dim) -> (B, 2, *D): the mean and log-scale of p(x | z)."""
    if data.is_image:
        return _ImageDecoder(data, in_dim, width)
    return _VectorDecoder(data, in_dim, hidden)
