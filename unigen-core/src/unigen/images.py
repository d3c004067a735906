"""Writing samples: PNG grids for images, density pictures for 2-D points, .npy for anything."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import UnigenError


def image_grid(x: Tensor, ncol: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 array (rows, cols[, 3]) of a grid. Grayscale stays grayscale."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    n, c, h, w = x.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = torch.zeros(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = x[i]
    arr = grid.permute(1, 2, 0).numpy()
    if scale > 1:
        arr = arr.repeat(scale, 0).repeat(scale, 1)
    return arr[..., 0] if c == 1 else arr


def points_picture(x: Tensor, size: int = 256, lim: float = 3.0) -> np.ndarray:
    """(N, 2) points -> uint8 (size, size) 2-D histogram picture (dark = dense)."""
    p = x.detach().float().cpu().numpy()
    hist, _, _ = np.histogram2d(p[:, 1], p[:, 0], bins=size, range=[[-lim, lim], [-lim, lim]])
    hist = np.log1p(hist[::-1])
    img = 255 - (hist / max(hist.max(), 1e-9) * 255)
    return img.astype(np.uint8)


def picture(x: Tensor) -> np.ndarray | None:
    """Samples as one uint8 picture: a grid of images (H, W[, 3]) or a density of 2-D points; None
    for anything else (vectors of other sizes, tokens)."""
    if x.dim() == 4:
        return image_grid(x, scale=4 if x.shape[-1] <= 16 else 2)
    if x.dim() == 2 and x.shape[1] == 2:
        return points_picture(x)
    return None


def save_samples(x: Tensor, path: str | Path) -> Path:
    """Save samples as a PNG picture or a .npy array, chosen by the file's suffix."""
    from PIL import Image

    path = Path(path)
    if path.suffix == ".npy":
        np.save(path, x.detach().cpu().numpy())
    elif path.suffix == ".png":
        arr = picture(x)
        if arr is None:
            raise UnigenError(f"cannot draw samples of shape {tuple(x.shape[1:])} as PNG; use --out FILE.npy")
        Image.fromarray(arr).save(path)
    else:
        raise UnigenError(f"--out must end in .png or .npy, got {path.name!r}")
    return path
