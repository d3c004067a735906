"""Maximum mean discrepancy with a multi-scale RBF kernel (Gretton et al. 2012).

MMD^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y) with k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2)).
The unbiased estimator drops the diagonal terms; the biased one (``unbiased=False``) keeps them and is
zero exactly when the two samples are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

SCALES = (0.1, 0.2, 0.5, 1.0, 2.0)


def rbf_kernel(a: Tensor, b: Tensor, scales: Sequence[float] = SCALES) -> Tensor:
    d2 = torch.cdist(a.flatten(1).double(), b.flatten(1).double()).pow(2)
    return sum((torch.exp(-d2 / (2 * s * s)) for s in scales), torch.zeros_like(d2))


def mmd2(x: Tensor, y: Tensor, scales: Sequence[float] = SCALES, unbiased: bool = True) -> Tensor:
    """Squared MMD between samples x (n, *D) and y (m, *D)."""
    kxx, kyy, kxy = rbf_kernel(x, x, scales), rbf_kernel(y, y, scales), rbf_kernel(x, y, scales)
    n, m = x.shape[0], y.shape[0]
    if unbiased:
        sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        sxx, syy = kxx.mean(), kyy.mean()
    return sxx + syy - 2 * kxy.mean()
