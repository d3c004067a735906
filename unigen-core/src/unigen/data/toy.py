"""2-D toy densities for density-estimation work: moons, 8gaussians, checkerboard, swissroll.

Each split is drawn from a fixed seed (train 10,000 points, test 2,000), scaled to roughly unit
variance. Use :func:`sample_toy` for fresh draws (e.g. MMD against new data).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..model import DataInfo
from .base import Dataset

N = {"train": 10_000, "test": 2_000}


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=0.05, random_state=int(rng.integers(2**31)))
    return (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5]) * 1.0


def _8gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    angles = rng.integers(0, 8, n) * (2 * math.pi / 8)
    centres = np.stack([np.cos(angles), np.sin(angles)], 1) * 2.0
    return (centres + 0.1 * rng.standard_normal((n, 2))) / 1.414


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) + rng.integers(0, 2, n) - 2 + (np.floor(x1) % 2)
    return np.stack([x1, x2 * 2 + 1], 1) / 1.15


def _swissroll(rng: np.random.Generator, n: int) -> np.ndarray:
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n, noise=0.5, random_state=int(rng.integers(2**31)))
    return x[:, [0, 2]] / 7.5


TOYS = {"moons": _moons, "8gaussians": _8gaussians, "checkerboard": _checkerboard, "swissroll": _swissroll}


def sample_toy(name: str, n: int, seed: int) -> torch.Tensor:
    """Fresh points from a toy density, shape (n, 2)."""
    rng = np.random.default_rng(seed)
    return torch.as_tensor(TOYS[name](rng, n), dtype=torch.float32)


def loader(name: str):
    def load(split: str = "train", data_dir: str | None = None) -> Dataset:
        seed = {"train": 1, "test": 2}.get(split, 3) + 100 * list(TOYS).index(name)
        x = sample_toy(name, N.get(split, N["test"]), seed)
        return Dataset(info=DataInfo(name=name, shape=(2,), kind="vector"), x=x)

    return load
