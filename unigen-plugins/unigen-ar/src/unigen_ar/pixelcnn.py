"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

A PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks") computes every conditional
P(v_d | v_<d) at once with convolutions masked so that position d sees only earlier positions. A
single masked k x k kernel has a blind spot: the pixels up and to the right of the centre never
enter the receptive field, however many layers are stacked. Gated PixelCNN removes it with two
stacks:

- the *vertical* stack sees every pixel of the rows strictly above (k x k kernel, rows below the
  centre masked; the first layer also masks the centre row, later layers keep it, which is safe
  because their input already sees only rows above);
- the *horizontal* stack sees the pixels to the left in the current row (1 x k kernel) and receives
  the vertical stack through a 1 x 1 convolution, so together they cover all earlier pixels.

Mask "A" (first layer) hides the centre pixel; mask "B" (later layers) keeps it. Each layer uses the
gated activation of Eq. 2, y = tanh(W_f * x) . sigmoid(W_g * x), and the horizontal stack has a
residual connection (Fig. 2). With C > 1 colour channels the hidden channels are split into C groups
and the centre taps and 1 x 1 convolutions are masked so that channel c of a pixel sees channels < c
of that pixel (mask A) or <= c (mask B), as in Pixel RNN, Sec. 3.4. The output is a softmax over
the K levels for every channel of every pixel.

Notation: k kernel size, h hidden channels, C colour channels, K levels.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from attrs import validators as v
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import from_levels, nonnegative_int, positive_float, positive_int

from .base import ARModel


def _odd(instance, attribute, value) -> None:
    if value % 2 == 0:
        raise ValueError(f"{attribute.name} must be odd, got {value}")


@attrs.frozen(kw_only=True)
class PixelCNNConfig:
    hidden: int = positive_int(48)  # channels h of each stack
    # Gated layers with mask B. None: from the resolution, enough for a receptive field of about half
    # the side (first_kernel + 2 per layer), never fewer than 5: 5 up to 32 px, 13 at 64 px.
    layers: int | None = attrs.field(default=None, validator=v.optional([v.instance_of(int), v.ge(0)]))
    # The paper starts with a 7 x 7 mask-A layer, then 3 x 3 gated layers.
    first_kernel: int = attrs.field(default=7, validator=[v.instance_of(int), v.ge(3), _odd])
    # Side of every later gated layer's mask-B kernel.
    kernel: int = attrs.field(default=3, validator=[v.instance_of(int), v.ge(3), _odd])
    head: int = positive_int(96)  # width of the 1 x 1 output layers
    # Sampling only: T = 1 and top_k = 0 draw from the model itself.
    temperature: float = positive_float(1.0)  # T: sampling divides the logits by T (never logprob)
    top_k: int = nonnegative_int(0)  # sampling draws from the k most likely levels only; 0: every level


def colour_groups(n: int, colours: int) -> Tensor:
    """The colour group of each of n channels: contiguous blocks, (n,) long."""
    return torch.arange(n) * colours // n


class MaskedConv(nn.Conv2d):
    """A convolution whose weight is multiplied by a fixed 0/1 mask of the weight's shape."""

    mask: Tensor  # buffer, the weight's shape (cout, cin, kh, kw): 1 where a connection is allowed

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], mask: Tensor) -> None:
        super().__init__(cin, cout, kernel, padding=(kernel[0] // 2, kernel[1] // 2))
        self.register_buffer("mask", mask.to(self.weight.dtype).expand_as(self.weight).clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def channel_mask(out_groups: Tensor, in_groups: Tensor, strict: bool) -> Tensor:
    """(out, in) 0/1: output channel of group g may read input channels of group < g (strict, mask
    A) or <= g (mask B)."""
    o, i = out_groups[:, None], in_groups[None, :]
    return (i < o if strict else i <= o).float()


def vertical_mask(cin: int, cout: int, k: int, first: bool) -> Tensor:
    """(cout, cin, k, k): rows above the centre; the centre row too unless ``first`` (mask A)."""
    m = torch.zeros(cout, cin, k, k)
    m[:, :, : k // 2 + (0 if first else 1)] = 1
    return m


def horizontal_mask(in_groups: Tensor, out_groups: Tensor, k: int, first: bool) -> Tensor:
    """(cout, cin, 1, k): pixels left of the centre; the centre by colour group (mask A or B)."""
    m = torch.zeros(len(out_groups), len(in_groups), 1, k)
    m[:, :, 0, : k // 2] = 1
    m[:, :, 0, k // 2] = channel_mask(out_groups, in_groups, strict=first)
    return m


def gate(x: Tensor) -> Tensor:
    """Eq. 2: tanh(a) * sigmoid(b) over the two halves of the channels. (B, 2h, H, W) -> (B, h, H, W)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One layer of both stacks (Fig. 2). ``first``: mask A, input the image, no residual."""

    def __init__(self, cin: int, hidden: int, k: int, colours: int, first: bool) -> None:
        super().__init__()
        gin = torch.arange(cin) if first else colour_groups(cin, colours)
        gh = colour_groups(hidden, colours)
        g2h = gh.repeat(2)  # the gate's two halves keep the groups of the hidden channels
        self.first = first
        self.vconv = MaskedConv(cin, 2 * hidden, (k, k), vertical_mask(cin, 2 * hidden, k, first))
        self.hconv = MaskedConv(cin, 2 * hidden, (1, k), horizontal_mask(gin, g2h, k, first))
        # The vertical features see only rows above, so every one of them may feed every group.
        self.v2h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.hout = MaskedConv(hidden, hidden, (1, 1), channel_mask(gh, gh, strict=False)[:, :, None, None])

    def forward(self, vs: Tensor, hs: Tensor) -> tuple[Tensor, Tensor]:
        vf = self.vconv(vs)  # (B, 2h, H, W)
        hf = self.hconv(hs) + self.v2h(vf)  # (B, 2h, H, W)
        h = self.hout(gate(hf))  # (B, h, H, W)
        return gate(vf), h if self.first else hs + h


class PixelCNN(ARModel):
    """Gated PixelCNN with a softmax over the K levels of every channel of every pixel."""

    Config = PixelCNNConfig
    trainer_defaults = {"lr": 1e-3}

    @staticmethod
    def layers_for(config: PixelCNNConfig, data: DataInfo) -> int:
        """``config.layers``, or the resolution rule of the config's comment."""
        if config.layers is not None:
            return config.layers
        return max(5, math.ceil((data.shape[1] / 2 - config.first_kernel) / 2))

    def __init__(self, config: PixelCNNConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        c = data.shape[0]
        h, k = config.hidden, self.levels
        self.stacks = nn.ModuleList(
            [GatedLayer(c, h, config.first_kernel, c, first=True)]
            + [GatedLayer(h, h, config.kernel, c, first=False) for _ in range(self.layers_for(config, data))]
        )
        gh, ghead = colour_groups(h, c), colour_groups(config.head, c)
        gout = torch.arange(c * k) // k  # logits laid out as (C, K)
        self.head = nn.Sequential(
            nn.ReLU(),
            MaskedConv(h, config.head, (1, 1), channel_mask(ghead, gh, strict=False)[:, :, None, None]),
            nn.ReLU(),
            MaskedConv(config.head, c * k, (1, 1), channel_mask(gout, ghead, strict=False)[:, :, None, None]),
        )

    @classmethod
    def example_config(cls, data: DataInfo, workdir) -> PixelCNNConfig:
        return PixelCNNConfig(hidden=16, layers=2, first_kernel=5, head=32)

    def logits(self, v: Tensor) -> Tensor:
        x = from_levels(v, self.levels, self.dtype)  # (B, C, H, W) in [-1, 1]
        vs = hs = x
        for layer in self.stacks:
            vs, hs = layer(vs, hs)
        out = self.head(hs)  # (B, C*K, H, W)
        b, _, height, width = out.shape
        return out.view(b, -1, self.levels, height, width).transpose(1, 2)  # (B, K, C, H, W)

    @torch.no_grad()
    def generate(self, u: Tensor) -> Tensor:
        """Pixel by pixel, channel by channel: D passes of the network. Row i's conditionals depend
        only on rows <= i, so each pass runs on rows 0..i alone (exactly the same values)."""
        channels, height, width = self.data.shape
        v = torch.zeros(u.shape, dtype=torch.long, device=u.device)  # (B, C, H, W)
        for i in range(height):
            for j in range(width):
                for c in range(channels):
                    logits = self.logits(v[:, :, : i + 1])[:, :, c, i, j]  # (B, K)
                    v[:, c, i, j] = self.draw(logits, u[:, c, i, j])
        return v
