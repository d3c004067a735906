"""Networks shared inside the family: a time-conditioned field (MLP on vectors, the core UNet on
images) and a plain MLP for maps, energies and critics on vectors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import MLP, UNet

TIME_FREQS = 4


def time_features(t: Tensor, freqs: int = TIME_FREQS) -> Tensor:
    """t, sin(k pi t), cos(k pi t) for k = 1..freqs: (B,) -> (B, 1 + 2 freqs). Low frequencies keep the
    field smooth in t, so few solver steps suffice."""
    k = torch.arange(1, freqs + 1, device=t.device, dtype=t.dtype) * math.pi
    args = t[:, None] * k[None]  # (B, freqs)
    return torch.cat([t[:, None], args.sin(), args.cos()], 1)


class TimeField(nn.Module):
    """f(x, t) with ``heads`` outputs of x's shape: (B, *D), (B,) -> (B, heads, *D).

    Vectors: an MLP on [x, time features]; images: the core UNet with heads * C output channels.
    """

    def __init__(self, data: DataInfo, heads: int = 1, hidden: int = 128, depth: int = 3, width: int = 32) -> None:
        super().__init__()
        self.heads = heads
        # Exactly one of the two is built: the UNet on images (depth by resolution), the MLP on vectors.
        self.unet: UNet | None = (UNet(data.shape[0], width, out_channels=heads * data.shape[0], size=data.shape[1])
                                  if data.is_image else None)
        self.mlp: MLP | None = (None if data.is_image
                                else MLP([data.dim + 1 + 2 * TIME_FREQS] + [hidden] * depth + [heads * data.dim]))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        b = x.shape[0]
        if self.unet is not None:
            out = self.unet(x, t)  # (B, heads * C, H, W)
        else:
            assert self.mlp is not None  # built whenever the UNet is not
            out = self.mlp(torch.cat([x.flatten(1), time_features(t.to(x.dtype))], 1))  # (B, heads * D)
        return out.view(b, self.heads, *x.shape[1:])  # (B, heads, *D)


def vector_mlp(d_in: int, d_out: int, hidden: int, depth: int) -> MLP:
    """d_in -> hidden (x depth) -> d_out with SiLU between layers."""
    return MLP([d_in] + [hidden] * depth + [d_out], act=nn.SiLU)
