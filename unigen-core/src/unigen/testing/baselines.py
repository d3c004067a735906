"""Fitted baselines for "it learns" tests: simple models of the training data that a working generative
model must beat, and that a broken one (a network blind to its input, a mask that sees nothing) cannot.

- :func:`independent_pixels_bits`: test bits/dim of the best model of independent pixels, one categorical
  over the K levels per pixel with its frequencies counted on the training split (add-alpha smoothing).
  Any model whose conditionals ignore the other pixels is such a model, so it cannot do better. On the
  digits (17 levels): 2.44 bits/dim, against log2 17 = 4.09 for the uniform distribution.
- :func:`mixture_samples`: draws of a Gaussian mixture fitted by EM (scikit-learn) to the training data,
  full covariances; one component knows every dimension's mean and every pair's correlation, and nothing
  else. Images are clamped to the data range [-1, 1].
- :func:`frechet_to`: the Frechet distance (FID's formula) to a reference set in the features of the
  dataset's evaluator CNN (:mod:`unigen.metrics.evaluator`, a classifier trained independently of any
  model). It rewards structure that a pixel-space MMD hardly sees: on the digits, samples of independent
  pixels score an MMD as low as a 4-component mixture's, but a Frechet distance of 9.7 against 2.7.
  Compare distances computed from the same number of samples (the estimate is biased upward for few).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..data import Dataset


def _levels(x: Tensor, k: int) -> Tensor:
    """Data in [-1, 1] -> level indices in {0..K-1}, (N, D) long."""
    return ((x + 1) / 2 * (k - 1)).round().long().flatten(1)


def independent_pixels_bits(train: Dataset, test: Dataset, alpha: float = 0.5) -> float:
    """Test bits/dim of per-pixel categoricals fitted to ``train`` (quantized data only)."""
    k, d = train.info.levels, train.info.dim
    if k is None:
        raise ValueError(f"{train.info.name!r} is not quantized: independent pixels need levels")
    counts = torch.full((d, k), alpha, dtype=torch.float64)
    counts.scatter_add_(1, _levels(train.x, k).T, torch.ones(d, len(train), dtype=torch.float64))
    logp = (counts / counts.sum(1, keepdim=True)).log()  # (D, K)
    nats = -logp.gather(1, _levels(test.x, k).T).sum(0).mean()  # per example
    return float(nats) / d / math.log(2)


def mixture_samples(train: Dataset, n: int, components: int = 1, seed: int = 0) -> Tensor:
    """``n`` draws, shaped like the data, of a ``components``-Gaussian mixture fitted to ``train``."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(components, random_state=seed).fit(train.x.flatten(1).double().numpy())
    x = torch.tensor(gmm.sample(n)[0], dtype=torch.float32).view(n, *train.info.shape)
    return x.clamp(-1, 1) if train.info.is_image else x


def frechet_to(train: Dataset, test: Dataset) -> Callable[[Tensor], float]:
    """x -> Frechet distance between images ``x`` and the ``test`` split in the features of the evaluator
    of ``train`` (a classifier trained on ``train`` and cached on first use)."""
    from ..metrics.evaluator import data_evaluator
    from ..metrics.scores import fid

    evaluator = data_evaluator(train, test)
    features = evaluator(test.x)[0]
    return lambda x: fid(features, evaluator(x)[0])
