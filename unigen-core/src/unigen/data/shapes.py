"""Coloured shapes: a procedural RGB data set with known factors, in the spirit of dSprites.

Each image is one anti-aliased shape on a dark background. Its factors of variation are drawn
independently from a seed:

=========  ==============================================================  =============
factor     values                                                          kind
=========  ==============================================================  =============
shape      square, circle, triangle, cross (the label ``y``)               4 classes
colour     red, yellow, green, cyan, blue, magenta                         6 classes
scale      half-size 0.14, 0.18, 0.22 or 0.26 of the image side            4 classes
x, y       the centre, uniform over the positions where the shape fits     in [0, 1]
=========  ==============================================================  =============

Ids: ``shapes`` (3x32x32) and ``shapes-64`` (3x64x64); train 10,000 and test 2,000 images each,
256 levels; both sizes show the same scenes. Nothing is downloaded: the images are rendered with vectorised numpy from a signed
distance per shape (coverage = clamp(0.5 - d, 0, 1) with d in pixels, a one-pixel anti-aliased
edge) and cached in memory as uint8. ``factors(split, size)`` returns every factor per image.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..model import DataInfo
from .base import Dataset

SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = {
    "red": (230, 40, 40), "yellow": (235, 205, 30), "green": (40, 190, 60),
    "cyan": (40, 200, 220), "blue": (60, 90, 240), "magenta": (215, 55, 215),
}
SCALES = (0.14, 0.18, 0.22, 0.26)  # half-size of a shape, as a fraction of the image side
BACKGROUND = (16, 16, 24)
N = {"train": 10_000, "test": 2_000}
SEEDS = {"train": 15, "test": 16}
SIZES = (32, 64)
_CHUNK = 1024  # images rendered at once: bounds the float32 work arrays to a few MB


def _square(du: np.ndarray, dv: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(du), np.abs(dv)) - 0.85 * r  # same area as the circle, roughly


def _circle(du: np.ndarray, dv: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.sqrt(du * du + dv * dv) - r


def _triangle(du: np.ndarray, dv: np.ndarray, r: np.ndarray) -> np.ndarray:
    # Equilateral, apex up (v grows downwards), circumradius 1.15 r: the largest of the three edge
    # functions n_k . (u, v) - inradius, with outward unit normals n_k.
    rr = 1.15 * r
    edges = (dv, 0.866 * du - 0.5 * dv, -0.866 * du - 0.5 * dv)
    return np.maximum(np.maximum(edges[0], edges[1]), edges[2]) - 0.5 * rr


def _cross(du: np.ndarray, dv: np.ndarray, r: np.ndarray) -> np.ndarray:
    w = 0.35 * r  # half-width of an arm
    au, av = np.abs(du), np.abs(dv)
    return np.minimum(np.maximum(au - r, av - w), np.maximum(au - w, av - r))


SDF = {"square": _square, "circle": _circle, "triangle": _triangle, "cross": _cross}


def draw_factors(n: int, seed: int) -> dict[str, np.ndarray]:
    """Independent factors for ``n`` images: shape, colour, scale (int64) and x, y in [0, 1]."""
    rng = np.random.default_rng(seed)
    return {
        "shape": rng.integers(0, len(SHAPES), n),
        "colour": rng.integers(0, len(COLOURS), n),
        "scale": rng.integers(0, len(SCALES), n),
        "x": rng.uniform(0.0, 1.0, n),
        "y": rng.uniform(0.0, 1.0, n),
    }


def render(f: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Images of the factors ``f`` at ``size`` x ``size``: uint8, shape (N, 3, size, size)."""
    n = len(f["shape"])
    out = np.empty((n, 3, size, size), np.uint8)
    palette = np.asarray(list(COLOURS.values()), np.float32)  # (6, 3)
    bg = np.asarray(BACKGROUND, np.float32)[None, :, None, None]
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    for lo in range(0, n, _CHUNK):
        sl = slice(lo, min(lo + _CHUNK, n))
        r = (np.asarray(SCALES, np.float32)[f["scale"][sl]] * size)[:, None, None]  # (B, 1, 1) pixels
        margin = 1.2 * r + 1.0  # the triangle's circumradius plus the anti-aliased edge
        cx = margin + f["x"][sl, None, None].astype(np.float32) * (size - 2 * margin)
        cy = margin + f["y"][sl, None, None].astype(np.float32) * (size - 2 * margin)
        du = grid[None, None, :] - cx  # (B, 1, S)
        dv = grid[None, :, None] - cy  # (B, S, 1)
        du, dv = np.broadcast_arrays(du, dv)
        d = np.empty(du.shape, np.float32)  # (B, S, S) signed distance in pixels
        for k, name in enumerate(SHAPES):
            m = f["shape"][sl] == k
            d[m] = SDF[name](du[m], dv[m], np.broadcast_to(r[m], du[m].shape))
        cover = np.clip(0.5 - d, 0.0, 1.0)[:, None]  # (B, 1, S, S)
        fg = palette[f["colour"][sl]][:, :, None, None]  # (B, 3, 1, 1)
        out[sl] = np.rint(cover * fg + (1.0 - cover) * bg).astype(np.uint8)
    return out


@functools.cache
def _split(split: str, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    f = draw_factors(N.get(split, N["test"]), SEEDS.get(split, SEEDS["test"]))  # same scenes at every size
    images = torch.from_numpy(render(f, size))
    return images, {k: torch.as_tensor(v) for k, v in f.items()}


def factors(split: str = "train", size: int = 32) -> dict[str, torch.Tensor]:
    """Every factor of a split, aligned with its images: shape/colour/scale (long), x/y (float64)."""
    return dict(_split(split, size)[1])


def images_uint8(split: str = "train", size: int = 32) -> torch.Tensor:
    """The split's images as uint8, shape (N, 3, size, size) (cached; do not modify)."""
    return _split(split, size)[0]


def loader(size: int):
    """A loader ``load(split, data_dir)`` of the coloured shapes at ``size`` x ``size``."""
    name = "shapes" if size == 32 else f"shapes-{size}"

    def load(split: str = "train", data_dir: str | None = None) -> Dataset:
        images, f = _split(split, size)
        info = DataInfo(name=name, shape=(3, size, size), kind="image", levels=256, num_classes=len(SHAPES))
        return Dataset(info=info, x=images, y=f["shape"].clone(), captions=CAPTIONS)  # uint8, floats per batch

    return load


CAPTIONS = tuple(f"a coloured {s}" for s in SHAPES)
