"""The layers of a small StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality
of StyleGAN"; the style-based generator of Karras et al. 2019).

- Equalized learning rate (Karras et al. 2018, Sec. 4.1): weights are drawn N(0, 1) and scaled at run
  time by c = lr_mul / sqrt(fan_in); the mapping network uses lr_mul = 0.01 (StyleGAN, Sec. C).
- Mapping network f: z -> w, pixel-normalized z, leaky ReLU MLP (StyleGAN Sec. 2).
- Weight (de)modulation (StyleGAN2 Eq. 1-3): with a style s = A(w) per input channel,
      w'_ijk = s_i w_ijk,   w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps),
  computed by scaling the activations (the same linear map); demodulation replaces AdaIN.
- Noise injection: per-pixel N(0, 1) noise scaled by a learned per-layer strength (init 0).
- Synthesis: a learned constant at the smallest grid, two styled 3x3 convs per resolution after
  bilinear upsampling, and skip connections that sum the upsampled RGB outputs of every resolution
  (StyleGAN2's "skip" generator, Fig. 7b).
- Discriminator: StyleGAN2's residual discriminator (Fig. 7c), or the plain feedforward one without the
  skips ("orig", Fig. 7a; StyleGAN2-ADA's setting for CIFAR-10), with the minibatch standard deviation
  feature at the end (Karras et al. 2018, Sec. 3).
- Path-length regularisation (StyleGAN2 Sec. 3.2): :func:`path_lengths` here, the lazy penalty and its
  running mean in :mod:`unigen_gan.stylegan`.
Simplification for small images on a CPU: bilinear resampling instead of FIR-filtered up/downsampling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unigen.plugin import level_channels, spatial_sizes

SQRT2 = math.sqrt(2.0)


def lrelu(x: Tensor) -> Tensor:
    """Leaky ReLU (slope 0.2) times sqrt(2), which keeps the activations' second moment (StyleGAN2's gain)."""
    return F.leaky_relu(x, 0.2) * SQRT2


class EqualLinear(nn.Module):
    """y = (c W) x + lr_mul b with W ~ N(0, 1 / lr_mul^2) and c = lr_mul / sqrt(in)."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)) / lr_mul)
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(cin), lr_mul, act

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return lrelu(y) if self.act else y


class EqualConv2d(nn.Module):
    """A convolution with equalized learning rate (weights scaled by 1 / sqrt(C_in k^2) at run time)."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, act: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.pad, self.act = 1 / math.sqrt(cin * kernel * kernel), kernel // 2, act

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)
        return lrelu(y) if self.act else y


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): pixel norm, then ``layers`` leaky-ReLU equalized linear layers."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_mul: float = 0.01) -> None:
        super().__init__()
        sizes = [z_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, act=True) for a, b in zip(sizes[:-1], sizes[1:])])

    def forward(self, z: Tensor) -> Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)  # pixel norm: |z|^2 = z_dim
        return self.net(z)


class ModulatedConv2d(nn.Module):
    """x (B, C_in, H, W), w (B, w_dim) -> (B, C_out, H, W) with the kernel modulated per example."""

    def __init__(self, cin: int, cout: int, kernel: int, w_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)  # A: styles start at 1
        self.scale, self.pad, self.demodulate = 1 / math.sqrt(cin * kernel * kernel), kernel // 2, demodulate

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # Scaling the input channels by s_i and the output channels by the demodulation coefficient
        # d_j = 1 / sqrt(sum_{i,k} (s_i w_ijk)^2 + eps) is the same linear map as convolving with w''
        # (StyleGAN2's non-fused form); it avoids a grouped convolution with one group per example.
        s = self.affine(w)  # (B, C_in)
        weight = self.scale * self.weight  # (C_out, C_in, k, k)
        out = F.conv2d(x * s[:, :, None, None], weight, padding=self.pad)  # (B, C_out, H, W)
        if self.demodulate:
            d = torch.rsqrt(s.pow(2) @ weight.pow(2).sum((2, 3)).t() + 1e-8)  # (B, C_out)   Eq. 3
            out = out * d[:, :, None, None]
        return out


class StyledConv(nn.Module):
    """Modulated 3x3 conv, noise injection, bias, leaky ReLU."""

    def __init__(self, cin: int, cout: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        h = self.conv(x, w)
        noise = torch.randn(h.shape[0], 1, *h.shape[2:], device=h.device, dtype=h.dtype)  # (B, 1, H, W)
        return lrelu(h + self.noise_strength * noise + self.bias[:, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to the image channels, without demodulation (StyleGAN2 Fig. 7)."""

    def __init__(self, cin: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias[:, None, None]


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> image (B, C, H, W). Resolutions e.g. 4 -> 8, or 4 -> 7 -> 14 -> 28.

    Style indices: the base conv takes ws[:, 0], the base toRGB ws[:, 1]; resolution i >= 1 takes
    ws[:, 2i - 1] and ws[:, 2i] for its convs and ws[:, 2i + 1] for its toRGB.
    """

    def __init__(self, shape: tuple[int, ...], w_dim: int, width: int) -> None:
        super().__init__()
        c, h, _ = shape
        self.sizes = spatial_sizes(h)[::-1]
        chans = level_channels(width, len(self.sizes))[::-1]  # smallest grid first
        self.const = nn.Parameter(torch.randn(1, chans[0], self.sizes[0], self.sizes[0]))  # learned input
        self.base = StyledConv(chans[0], chans[0], w_dim)
        self.rgbs = nn.ModuleList([ToRGB(ch, c, w_dim) for ch in chans])
        self.convs = nn.ModuleList()
        for a, b in zip(chans[:-1], chans[1:]):
            self.convs.append(nn.ModuleList([StyledConv(a, b, w_dim), StyledConv(b, b, w_dim)]))
        self.num_ws = 2 * len(self.sizes)

    def forward(self, ws: Tensor) -> Tensor:
        x = self.base(self.const.expand(ws.shape[0], -1, -1, -1), ws[:, 0])  # (B, ch0, s0, s0)
        img = self.rgbs[0](x, ws[:, 1])  # (B, C, s0, s0)
        for i, (size, pair) in enumerate(zip(self.sizes[1:], self.convs), start=1):
            conv_a, conv_b = pair.children()  # the resolution's two StyledConvs
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = conv_b(conv_a(x, ws[:, 2 * i - 1]), ws[:, 2 * i])  # (B, ch_i, size, size)
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False) + self.rgbs[i](x, ws[:, 2 * i + 1])
        return img


D_ARCHITECTURES = ("resnet", "orig")


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convs and a downsample; "resnet" adds a 1x1 skip, (h + skip) / sqrt(2); "orig" has none."""

    def __init__(self, cin: int, cout: int, size_out: int, architecture: str = "resnet") -> None:
        super().__init__()
        self.conv_a = EqualConv2d(cin, cin, 3, act=True)
        self.conv_b = EqualConv2d(cin, cout, 3, act=True)
        self.skip = EqualConv2d(cin, cout, 1, bias=False) if architecture == "resnet" else None
        self.size = size_out

    def forward(self, x: Tensor) -> Tensor:
        down = lambda t: F.interpolate(t, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        h = self.conv_b(down(self.conv_a(x)))
        return h if self.skip is None else (h + self.skip(down(x))) / SQRT2


def path_lengths(synthesis: nn.Module, ws: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """||J_w^T y||_2 per example (StyleGAN2 Eq. 4), J_w = dg(w)/dw, y ~ N(0, I) / sqrt(H W).

    ws: (B, num_ws, w_dim) -> (lengths (B,), images (B, C, H, W)); the lengths keep the graph
    (create_graph) so the penalty on them trains the synthesis network. As in the official code the
    squared norm is summed over w_dim and averaged over the num_ws copies of w before the root.
    """
    if not ws.requires_grad:
        ws = ws.detach().requires_grad_(True)
    images = synthesis(ws)  # (B, C, H, W)
    if y is None:
        y = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)  # J^T y: (B, num_ws, w_dim)
    return grad.pow(2).sum(2).mean(1).sqrt(), images


def minibatch_stddev(x: Tensor, group: int = 4) -> Tensor:
    """Append the mean over features of the per-group standard deviation as one more channel."""
    b, c, h, w = x.shape
    g = math.gcd(b, group)
    y = x.view(g, b // g, c, h, w)  # (G, B/G, C, H, W): groups of g examples strided over the batch
    std = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (B/G,)
    return torch.cat([x, std.repeat(g)[:, None, None, None].expand(b, 1, h, w)], 1)  # (B, C+1, H, W)


class StyleDiscriminator(nn.Module):
    """x (B, C, H, W) -> logits (B,)."""

    def __init__(self, shape: tuple[int, ...], width: int, architecture: str = "resnet") -> None:
        super().__init__()
        c, h, _ = shape
        sizes = spatial_sizes(h)  # e.g. [8, 4]
        chans = level_channels(width, len(sizes))
        self.from_rgb = EqualConv2d(c, chans[0], 1, act=True)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(a, b, s, architecture)
                                      for a, b, s in zip(chans[:-1], chans[1:], sizes[1:])])
        self.conv = EqualConv2d(chans[-1] + 1, chans[-1], 3, act=True)
        self.fc = EqualLinear(chans[-1] * sizes[-1] ** 2, chans[-1], act=True)
        self.out = EqualLinear(chans[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self.from_rgb(x))  # (B, ch, s, s)
        h = self.conv(minibatch_stddev(h))
        return self.out(self.fc(h.flatten(1))).squeeze(1)  # (B,)
