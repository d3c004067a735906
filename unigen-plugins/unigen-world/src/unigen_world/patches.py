"""Image patches for the family's transformers: patchify/unpatchify, 2-D sin-cos positions, the patch
size chosen for a data shape. Shared by I-JEPA and Transfusion, which both see an image as a row of
p x p patches in raster order."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unigen import ConfigError, DataInfo


def patch_size_for(data: DataInfo, requested: int | None) -> int:
    """``requested``, or from the resolution: 2 for images up to 16 pixels wide (8x8 digits: a 4x4
    grid), else the smallest divisor of the side that is at least side / 8, so the grid stays at
    most 8x8 patches (28x28: 4, a 7x7 grid; 32x32: 4, 8x8; 64x64: 8, 8x8). The size must divide
    the image."""
    if not data.is_image:
        raise ConfigError(f"this model needs images, and {data.name!r} has shape {data.shape}")
    _, h, w = data.shape
    p = requested or (2 if h <= 16 else next(d for d in range(math.ceil(h / 8), h + 1) if h % d == 0))
    if h % p or w % p:
        raise ConfigError(f"patch_size {p} does not divide the {h}x{w} images of {data.name!r}")
    return p


def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, N, C*p*p), patches in raster order, N = (H/p)(W/p)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p)  # (B, C, gh, p, gw, p)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(t: Tensor, p: int, shape: tuple[int, ...]) -> Tensor:
    """(B, N, C*p*p) -> (B, C, H, W), the inverse of :func:`patchify`."""
    c, h, w = shape
    b = t.shape[0]
    x = t.reshape(b, h // p, w // p, c, p, p)  # (B, gh, gw, C, p, p)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def sincos_2d(dim: int, gh: int, gw: int) -> Tensor:
    """Fixed 2-D sin-cos position embeddings (MAE, He et al. 2022; used by I-JEPA): (gh*gw, dim).
    Half the channels encode the row, half the column, each as sin/cos at geometric frequencies."""
    if dim % 4:
        raise ConfigError(f"embedding width {dim} must be a multiple of 4 for 2-D sin-cos positions")
    quarter = dim // 4
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(quarter, dtype=torch.float64) / quarter)

    def one(pos: Tensor) -> Tensor:
        a = pos[:, None] * freqs[None]
        return torch.cat([a.sin(), a.cos()], dim=1)  # (n, dim/2)

    rows = torch.arange(gh, dtype=torch.float64).repeat_interleave(gw)
    cols = torch.arange(gw, dtype=torch.float64).repeat(gh)
    return torch.cat([one(rows), one(cols)], dim=1).float()  # (gh*gw, dim)
