"""``moons-outliers``: the ``moons`` toy with a fraction of its points replaced by outliers drawn
uniformly from the box [-BOX, BOX]^2, for the robustness of unbalanced OT. Test clean points against
:func:`unigen.data.toy.sample_toy` ("moons").
"""

from __future__ import annotations

import torch

from unigen import DataInfo, Dataset
from unigen.plugin import TOY_SIZES as N
from unigen.plugin import sample_toy

OUTLIER_FRACTION = 0.1
BOX = 4.0


def with_outliers(x: torch.Tensor, fraction: float = OUTLIER_FRACTION, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``fraction`` of the rows of x (N, 2) by uniform points in [-BOX, BOX]^2.
    Returns (data, is_outlier mask (N,))."""
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=gen)[: round(fraction * n)]] = True
    out = x.clone()
    out[mask] = (torch.rand(int(mask.sum()), x.shape[1], generator=gen) * 2 - 1) * BOX
    return out, mask


def load_moons_outliers(split: str = "train", data_dir: str | None = None) -> Dataset:
    seed = {"train": 11, "test": 12}.get(split, 13)
    x, _ = with_outliers(sample_toy("moons", N.get(split, N["test"]), seed), seed=seed)
    return Dataset(info=DataInfo(name="moons-outliers", shape=(2,), kind="vector"), x=x)
