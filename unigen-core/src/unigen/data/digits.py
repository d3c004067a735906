"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 17 levels (0..16). No download."""

from __future__ import annotations

import functools

import torch

from ..model import DataInfo
from .base import Dataset

LEVELS = 17
N_TEST = 297  # a fixed, seeded split: 1,500 train / 297 test


@functools.cache
def _all() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    v = torch.as_tensor(bunch.images, dtype=torch.long)  # (1797, 8, 8) values 0..16
    y = torch.as_tensor(bunch.target, dtype=torch.long)
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
