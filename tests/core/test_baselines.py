"""The fitted baselines of the test kit (unigen.testing.baselines) against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from unigen import DataInfo
from unigen.data import Dataset
from unigen.testing import independent_pixels_bits, mixture_samples

INFO = DataInfo(name="levels", shape=(1, 2, 2), kind="image", levels=5)


def _split(levels: torch.Tensor) -> Dataset:
    return Dataset(info=INFO, x=levels.to(torch.uint8).view(-1, 1, 2, 2))


def test_independent_pixels_is_uniform_on_uniform_levels_and_the_entropy_of_a_skewed_pixel():
    every = torch.arange(5).repeat_interleave(4).view(5, 4)  # each pixel takes each level once
    assert independent_pixels_bits(_split(every), _split(every), alpha=0.0) == pytest.approx(math.log2(5))
    skewed = torch.zeros(4, 4, dtype=torch.long)
    skewed[0] = 3  # every pixel: level 0 three times, level 3 once
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))  # the cross-entropy on the same split
    assert independent_pixels_bits(_split(skewed), _split(skewed), alpha=0.0) == pytest.approx(h)
    assert independent_pixels_bits(_split(skewed), _split(skewed), alpha=0.5) > h  # smoothing costs on train


def test_mixture_samples_follow_the_data_shape_range_and_moments():
    torch.manual_seed(0)
    x = (torch.randn(4000, 1, 2, 2) * 0.1 + 0.3).clamp(-1, 1)
    info = DataInfo(name="gauss", shape=(1, 2, 2), kind="image")
    draws = mixture_samples(Dataset(info=info, x=x), 4000, components=1)
    assert draws.shape == (4000, 1, 2, 2) and draws.min() >= -1 and draws.max() <= 1
    assert torch.allclose(draws.mean(0), x.mean(0), atol=0.01)
    assert torch.allclose(draws.std(0), x.std(0), atol=0.01)
