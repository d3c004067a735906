"""Invertible layers of RealNVP (Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP").

Every layer maps h -> (h', log|det dh'/dh|) in ``forward`` (data -> noise) and inverts exactly in
``inverse``. Shapes: images (B, C, H, W), vectors (B, D).

Affine coupling (RealNVP Eq. 4-6, 9): with a binary mask b,

    y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x)),     log|det| = sum (1 - b) * s(b * x),
    x = b * y + (1 - b) * (y - t(b * y)) * exp(-s(b * y))     (b * y = b * x, so s and t are recomputable).

Masks: checkerboard (b_ij = (i + j) mod 2) and channel-wise (first half of the channels) for images
(Sec. 3.4), alternating halves for vectors. ``s = scale * tanh(raw)`` keeps the scales bounded, as in the
paper's implementation. ActNorm (Kingma & Dhariwal 2018, Glow Sec. 3.1): y = (x + bias) * exp(logs) per
channel, initialised from the first training batch so y has zero mean and unit variance.
Squeeze (Sec. 3.6): (B, C, H, W) -> (B, 4C, H/2, W/2), volume preserving.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unigen.plugin import MLP


class ActNorm(nn.Module):
    """Per-channel affine map with data-dependent initialisation (Glow)."""

    initialized: Tensor  # buffer (), uint8: 1 once the first training batch has set bias and logs

    def __init__(self, channels: int, image: bool) -> None:
        super().__init__()
        shape = (1, channels, 1, 1) if image else (1, channels)
        self.bias = nn.Parameter(torch.zeros(shape))
        self.logs = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))  # saved: a resume keeps it
        self.spatial = image

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        dims = [0, 2, 3] if self.spatial else [0]
        mean, std = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std.clamp_min(1e-3)))
        self.initialized.fill_(1)

    def _pixels(self, x: Tensor) -> int:
        return x.shape[2] * x.shape[3] if self.spatial else 1

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._init(x)
        y = (x + self.bias) * self.logs.exp()
        return y, (self.logs.sum() * self._pixels(x)).expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * (-self.logs).exp() - self.bias


class Squeeze(nn.Module):
    """Space-to-depth: (B, C, H, W) -> (B, 4C, H/2, W/2); log|det| = 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
        return x.reshape(b, c * 4, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, y: Tensor) -> Tensor:
        b, c4, h, w = y.shape
        y = y.view(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)  # (B, C, H/2, 2, W/2, 2)
        return y.reshape(b, c4 // 4, h * 2, w * 2)


def checkerboard(h: int, w: int, parity: int) -> Tensor:
    """(1, 1, H, W) mask with b_ij = (i + j + parity) mod 2."""
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((i + j + parity) % 2).float()[None, None]


def channel_mask(c: int, parity: int, image: bool) -> Tensor:
    """Keep the first half of the channels (parity 0) or the second half (parity 1)."""
    m = (torch.arange(c) < c // 2).float()
    m = m if parity == 0 else 1 - m
    return m.view(1, c, 1, 1) if image else m.view(1, c)


class ConvNet(nn.Module):
    """s, t network for image couplings: conv3x3 - ReLU - conv1x1 - ReLU - conv3x3 (zero-init, so every
    coupling starts as the identity). The mask is an extra input channel."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * channels, 3, padding=1),
        )
        for p in self.net[-1].parameters():  # the last layer's weight and bias
            nn.init.zeros_(p)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.net(torch.cat([x, mask.expand(x.shape[0], 1, *x.shape[2:])], 1))  # (B, 2C, H, W)


class VectorNet(nn.Module):
    """s, t network for vector couplings: an MLP, last layer zero-initialised."""

    def __init__(self, dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.net = MLP([dim] + [hidden] * depth + [2 * dim], act=nn.ReLU)
        for p in self.net[-1].parameters():  # the last layer's weight and bias
            nn.init.zeros_(p)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.net(x)  # (B, 2D)


class AffineCoupling(nn.Module):
    """y = b x + (1 - b)(x exp(s(bx)) + t(bx)) with a fixed binary mask b (a buffer)."""

    mask: Tensor  # buffer b: (1, C, H, W) or (1, D), 1 where x passes unchanged

    def __init__(self, mask: Tensor, net: nn.Module, channels: int) -> None:
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the config
        self.net = net
        shape = (1, channels, 1, 1) if mask.dim() == 4 else (1, channels)
        self.scale = nn.Parameter(torch.ones(shape))

    def _st(self, xb: Tensor) -> tuple[Tensor, Tensor]:
        m = self.mask
        net_mask = m[:, :1] if m.dim() == 4 else m
        raw_s, t = self.net(xb, net_mask).chunk(2, dim=1)
        s = self.scale * torch.tanh(raw_s)
        return s * (1 - m), t * (1 - m)  # the kept part is untouched

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._st(x * self.mask)
        y = x * s.exp() + t  # s = t = 0 where mask = 1
        return y, s.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        s, t = self._st(y * self.mask)
        return (y - t) * (-s).exp()
