"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 17 levels (0..16). No download."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..model import DataInfo
from .base import Dataset

LEVELS = 17
N_TEST = 297  # a fixed, seeded split: 1,500 train / 297 test


def _bundled() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's own file, read without importing scikit-learn (``import sklearn.datasets`` costs 2-3 s of
    CPU, paid by every CLI process that trains on digits): 1,797 rows of 64 pixels and the label. Falls back to
    ``load_digits`` where the file is not at its usual place."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if (
        spec and spec.submodule_search_locations) else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    rows = np.loadtxt(path, delimiter=",")
    return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1]


@functools.cache
def _all() -> tuple[torch.Tensor, torch.Tensor]:
    images, target = _bundled()
    v = torch.as_tensor(images, dtype=torch.long)  # (1797, 8, 8) values 0..16
    y = torch.as_tensor(target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return v[perm], y[perm]


def load(split: str = "train", data_dir: str | None = None) -> Dataset:
    v, y = _all()
    sl = slice(0, len(y) - N_TEST) if split == "train" else slice(len(y) - N_TEST, None)
    x = v[sl].to(torch.uint8).unsqueeze(1).contiguous()  # (N, 1, 8, 8) level indices 0..16
    info = DataInfo(name="digits", shape=(1, 8, 8), kind="image", levels=LEVELS, num_classes=10)
    return Dataset(info=info, x=x, y=y[sl].clone(), captions=CAPTIONS)


CAPTIONS = tuple(
    f"a handwritten digit {w}"
    for w in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
)
