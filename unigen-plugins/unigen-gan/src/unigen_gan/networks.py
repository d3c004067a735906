"""Generator and discriminator networks of GAN, WGAN and WGAN-GP.

Images use the DCGAN architecture (Radford et al. 2016, Sec. 3): a projection of z reshaped to the
smallest grid, fractionally-strided convolutions up to the image with batch norm and ReLU in the
generator (tanh at the output), strided convolutions with leaky ReLU (slope 0.2) in the
discriminator, no pooling and no fully connected hidden layers. The grids follow
:func:`unigen.nn.spatial_sizes`, so 8x8 digits go 4 -> 8 and 28x28 images 4 -> 7 -> 14 -> 28.
Vectors use MLPs.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import MLP, level_channels, spatial_sizes

NORMS = ("batch", "layer", "none")
LeakyReLU = functools.partial(nn.LeakyReLU, 0.2)


def _norm(kind: str, ch: int) -> nn.Module:
    """Batch norm (DCGAN), layer norm over (C, H, W) (the WGAN-GP critic: the penalty is per example,
    so the critic must not mix examples, Gulrajani et al. 2017 Sec. 4), or nothing."""
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "layer":
        return nn.GroupNorm(1, ch)
    return nn.Identity()


def _up(cin: int, cout: int, size_in: int, size_out: int) -> nn.ConvTranspose2d:
    """A stride-2 transposed conv from size_in to size_out = 2 size_in (kernel 4) or 2 size_in - 1 (kernel 3)."""
    kernel = 4 if size_out == 2 * size_in else 3
    return nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=1, bias=False)


def _down(cin: int, cout: int, size_in: int) -> nn.Conv2d:
    """A stride-2 conv from size_in to ceil(size_in / 2): kernel 4 for even sizes, 3 for odd ones."""
    kernel = 4 if size_in % 2 == 0 else 3
    return nn.Conv2d(cin, cout, kernel, stride=2, padding=1)


class DCGANGenerator(nn.Module):
    """z (B, z_dim) -> x (B, C, H, W) in [-1, 1]."""

    def __init__(self, shape: tuple[int, ...], z_dim: int, width: int) -> None:
        super().__init__()
        c, h, _ = shape
        self.sizes = spatial_sizes(h)[::-1]  # smallest first, e.g. [4, 7, 14, 28]
        chans = level_channels(width, len(self.sizes))[::-1]  # smallest grid first
        self.ch0 = chans[0]
        self.project = nn.Linear(z_dim, self.ch0 * self.sizes[0] ** 2, bias=False)
        self.norm0 = nn.BatchNorm2d(self.ch0)
        ups: list[nn.Module] = []
        for a, b, s_in, s_out in zip(chans[:-1], chans[1:], self.sizes[:-1], self.sizes[1:]):
            ups += [_up(a, b, s_in, s_out), nn.BatchNorm2d(b), nn.ReLU()]
        self.ups = nn.Sequential(*ups)
        self.to_image = nn.Conv2d(width, c, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        s = self.sizes[0]
        h = self.project(z).view(z.shape[0], self.ch0, s, s)  # (B, ch0, s, s)
        h = self.ups(self.norm0(h).relu())  # (B, width, H, W)
        return self.to_image(h).tanh()  # (B, C, H, W)


class DCGANDiscriminator(nn.Module):
    """x (B, C, H, W) -> one real-valued score per example (B,): a logit, or a critic value."""

    def __init__(self, shape: tuple[int, ...], width: int, norm: str) -> None:
        super().__init__()
        c, h, _ = shape
        sizes = spatial_sizes(h)  # e.g. [28, 14, 7, 4]
        chans = level_channels(width, len(sizes))
        layers: list[nn.Module] = [nn.Conv2d(c, width, 3, padding=1), LeakyReLU()]  # no norm at the input
        for a, b, s in zip(chans[:-1], chans[1:], sizes[:-1]):
            layers += [_down(a, b, s), _norm(norm, b), LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(chans[-1] * sizes[-1] ** 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.convs(x).flatten(1)).squeeze(1)  # (B,)


class MLPGenerator(nn.Module):
    """z (B, z_dim) -> x (B, *D), unbounded (vectors come as they are)."""

    def __init__(self, shape: tuple[int, ...], z_dim: int, hidden: int) -> None:
        super().__init__()
        self.shape = shape
        dim = 1
        for s in shape:
            dim *= s
        self.net = MLP([z_dim, hidden, hidden, hidden, dim], act=nn.ReLU)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.shape)  # (B, *D)


class MLPDiscriminator(nn.Module):
    """x (B, *D) -> (B,). No normalization: each example is scored on its own."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = MLP([dim, hidden, hidden, hidden, 1], act=LeakyReLU)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)  # (B,)


@torch.no_grad()
def dcgan_init(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN's initialisation (Radford et al. 2016, Sec. 4: "All weights were initialized from a
    zero-centered Normal distribution with standard deviation 0.02"): conv, transposed-conv and linear
    weights ~ N(0, 0.02^2), biases 0; batch-norm scales ~ N(1, 0.02^2), shifts 0 (the reference
    implementation's reading of the same sentence for the affine batch-norm parameters)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            m.weight.normal_(0.0, std)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.normal_(1.0, std)
            m.bias.zero_()
    return module


def generator(data: DataInfo, z_dim: int, width: int, hidden: int) -> nn.Module:
    if data.is_image:
        return DCGANGenerator(data.shape, z_dim, width)
    return MLPGenerator(data.shape, z_dim, hidden)


def discriminator(data: DataInfo, width: int, hidden: int, norm: str) -> nn.Module:
    if data.is_image:
        return DCGANDiscriminator(data.shape, width, norm)
    return MLPDiscriminator(data.dim, hidden)
