"""Shared blocks. Shapes are given as ``# (B, C, H, W)`` comments."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last); ``act()`` builds each one
    (a class, or e.g. ``functools.partial(nn.LeakyReLU, 0.2)``)."""

    def __init__(self, sizes: Sequence[int], act: Callable[[], nn.Module] = nn.SiLU) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(act())
        super().__init__(*layers)


MAX_MULT = 8  # channels double per halving of the grid, up to 8x the base width


def level_channels(width: int, levels: int) -> list[int]:
    """Channels at each level of a conv stack: ``width * min(2**i, 8)``. Images up to 32 px (at most
    four levels) get the plain doubling; larger ones stop growing at 8x, so a 64x64 stack is one
    level deeper, not twice as wide (28: 32, 64, 128, 256 for width 32; 64: ..., 256, 256)."""
    return [width * min(2**i, MAX_MULT) for i in range(levels)]


def resolution_levels(size: int, base: int) -> int:
    """Resolution levels (the input's and one per halving) for images ``size`` pixels wide: the
    family's own ``base`` below 32 px (the depths tuned on 8x8 digits and 28x28 images); from 32 px
    on, enough halvings to reach an 8-pixel grid, and never fewer than ``base``
    (32: 32 -> 16 -> 8, three levels; 64: 64 -> 32 -> 16 -> 8, four; 128: five)."""
    return base if size < 32 else max(base, 1 + math.ceil(math.log2(size / 8)))


def unet_mults(size: int, base: Sequence[int]) -> tuple[int, ...]:
    """A UNet's channel multipliers for images ``size`` pixels wide: :func:`resolution_levels`
    levels, the ones added to ``base`` at its last multiplier ((1, 2) at 64 px: (1, 2, 2, 2))."""
    base = tuple(base)
    return base + (base[-1],) * (resolution_levels(size, len(base)) - len(base))


def spatial_sizes(size: int, smallest: int = 4) -> list[int]:
    """Sizes visited by stride-2 downsampling: 28 -> [28, 14, 7], 8 -> [8, 4]."""
    sizes = [size]
    while sizes[-1] > smallest:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_dim): stride-2 convs down to <= 4x4 (channels by
    :func:`level_channels`), then a linear layer."""

    def __init__(self, shape: Sequence[int], out_dim: int, width: int = 32) -> None:
        super().__init__()
        c, h, _ = shape
        self.sizes = spatial_sizes(h)
        chans = level_channels(width, len(self.sizes))
        layers: list[nn.Module] = [nn.Conv2d(c, width, 3, padding=1), nn.SiLU()]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            n = self.convs(torch.zeros(1, *shape)).numel()
        self.out = nn.Linear(n, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.convs(x).flatten(1))  # (B, out_dim)


class ConvDecoder(nn.Module):
    """(B, in_dim) -> (B, C, H, W): a linear layer to the smallest grid, then upsample + conv."""

    def __init__(self, shape: Sequence[int], in_dim: int, width: int = 32, out_channels: int | None = None) -> None:
        super().__init__()
        c, h, w = shape
        self.sizes = spatial_sizes(h)
        chans = level_channels(width, len(self.sizes))[::-1]  # bottom first
        self.ch0 = chans[0]
        self.inp = nn.Linear(in_dim, self.ch0 * self.sizes[-1] ** 2)
        self.ups = nn.ModuleList(nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.SiLU())
                                 for a, b in zip(chans[:-1], chans[1:]))
        self.head = nn.Conv2d(width, out_channels or c, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        s = self.sizes[-1]
        h = F.silu(self.inp(z)).view(z.shape[0], self.ch0, s, s)  # (B, ch0, s, s)
        for size, up in zip(self.sizes[:-1][::-1], self.ups):
            h = up(F.interpolate(h, size=(size, size), mode="nearest"))
        return self.head(h)  # (B, C, H, W)


def sinusoidal_embedding(t: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Transformer-style embedding of t in [0, 1] (Vaswani et al. 2017; DDPM's time embedding).

    t: (B,) -> (B, dim), in t's dtype (the default float dtype for integer t)."""
    half = dim // 2
    dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=dtype) / half)
    args = t.to(dtype)[:, None] * scale * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t followed by a two-layer MLP: (B,) -> (B, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = MLP([dim, dim * 2, dim])

    def forward(self, t: Tensor) -> Tensor:
        weight = next(self.mlp.parameters())
        return self.mlp(sinusoidal_embedding(t.to(weight.dtype), self.dim))  # follows the MLP's dtype


def _groups(ch: int) -> int:
    return math.gcd(ch, 8)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice with the time embedding added in between (DDPM's block)."""

    def __init__(self, cin: int, cout: int, tdim: int) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(_groups(cin), cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2 = nn.GroupNorm(_groups(cout), cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(temb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """A small time-conditioned UNet: (B, C, H, W), t (B,) -> (B, C_out, H, W).

    ``cond_dim`` optionally adds a conditioning vector (e.g. a class embedding) to the time embedding.
    One ResBlock per level; ``mults`` None: :func:`unet_mults` for images ``size`` px wide from
    (1, 2, 2), i.e. two resolutions below the input up to 28 px (28 -> 14 -> 7, 8 -> 4 -> 2) and down
    to an 8-pixel grid from 32 px on (64 -> 32 -> 16 -> 8).
    """

    def __init__(
        self, in_channels: int, width: int = 32, mults: Sequence[int] | None = None,
        out_channels: int | None = None, cond_dim: int = 0, size: int = 8,
    ) -> None:
        super().__init__()
        mults = unet_mults(size, (1, 2, 2)) if mults is None else mults
        tdim = width * 4
        self.temb = TimeEmbedding(tdim)
        self.cond = nn.Linear(cond_dim, tdim) if cond_dim else None
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        chans = [width * m for m in mults]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        ch = width
        for i, c in enumerate(chans):
            self.down.append(ResBlock(ch, c, tdim))
            ch = c
            if i < len(chans) - 1:
                self.pool.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = ResBlock(ch, ch, tdim)
        self.up = nn.ModuleList()
        for c in reversed(chans):
            self.up.append(ResBlock(ch + c, c, tdim))
            ch = c
        head = nn.Conv2d(ch, out_channels or in_channels, 3, padding=1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)  # type: ignore[arg-type]  # a Conv2d built with bias=True has one
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(), head)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        temb = self.temb(t)
        if self.cond is not None and cond is not None:
            temb = temb + self.cond(cond)
        h = self.inp(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, temb)
        for block in self.up:
            s = skips.pop()
            if h.shape[-2:] != s.shape[-2:]:
                h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
            h = block(torch.cat([h, s], 1), temb)
        return self.out(h)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2 style). x: (B, L, d); mask: bool (L, L), True = attend."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.dropout = dropout

    def attend(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3x (B, h, L, dh)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))  # (B, L, d)

    def forward(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        x = x + self.attend(self.ln1(x), mask, is_causal)
        return x + self.mlp(self.ln2(x))
