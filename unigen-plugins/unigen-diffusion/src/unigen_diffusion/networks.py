"""The denoising network eps_theta(x, t), t in [0, 1]: the core's small UNet for images, an MLP on
[x, time embedding] for vectors (2-D toys, VAE latents)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import MLP, TimeEmbedding, UNet, unet_mults

NETS = ("auto", "unet", "mlp")


class VectorDenoiser(nn.Module):
    """eps_theta(x, t) for x of shape (B, *D), flattened: an MLP on [x, TimeEmbedding(t)]."""

    def __init__(self, dim: int, hidden: int, depth: int, tdim: int = 64) -> None:
        super().__init__()
        self.temb = TimeEmbedding(tdim)
        self.mlp = MLP([dim + tdim, *([hidden] * depth), dim])

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = torch.cat([x.flatten(1), self.temb(t)], 1)  # (B, D + tdim)
        return self.mlp(h).view_as(x)


def output_layer(net: nn.Module) -> nn.Module:
    """The last linear or convolution layer of a denoiser (registered last in both nets here)."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return layers[-1]


def denoiser(space: DataInfo, net: str, width: int, mults: tuple[int, ...] | None, hidden: int,
             depth: int) -> nn.Module:
    """A UNet for images (``net`` auto or unet), else the MLP denoiser. ``mults`` None: chosen from
    the resolution, :func:`unigen.plugin.unet_mults` from (1, 2) (8x8 and 28x28: one halving;
    32x32: 32 -> 16 -> 8; 64x64: 64 -> 32 -> 16 -> 8)."""
    if net == "unet" or (net == "auto" and space.is_image):
        if not space.is_image:
            raise ValueError(f"net='unet' needs image data, got shape {space.shape}")
        return UNet(space.shape[0], width=width, mults=mults or unet_mults(space.shape[1], (1, 2)))
    return VectorDenoiser(space.dim, hidden, depth)
