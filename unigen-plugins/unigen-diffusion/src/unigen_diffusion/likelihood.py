"""Decoder log-likelihoods for the variational bound, per example in nats.

Images: the discretized Gaussian of Ho et al. 2020 (Eq. 13): the mass of the bin of width 2/(K-1)
around each level, the edge bins extended to -inf and +inf, so the bound is on log P of the K levels.
Vectors: a Gaussian density.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.special import log_ndtr


def discretized_gaussian_logp(x: Tensor, mean: Tensor, std: Tensor | float, levels: int) -> Tensor:
    """log P(x) under N(mean, std^2) integrated over x's bin; x on the grid of ``levels`` values in
    [-1, 1]. (B, *D) -> (B,)."""
    half = 1.0 / (levels - 1)
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    upper = (x - mean + half) / std
    lower = (x - mean - half) / std
    log_cdf_upper = log_ndtr(upper)  # bottom bin: P(X <= x + half)
    log_sf_lower = log_ndtr(-lower)  # top bin: P(X > x - half)
    # log(Phi(u) - Phi(l)) computed stably on the side of the bin nearer the mean.
    swap = lower > 0  # the whole bin above the mean: use the mirrored tails
    hi = torch.where(swap, -lower, upper)
    lo = torch.where(swap, -upper, lower)
    log_mid = log_ndtr(hi) + torch.log1p(-torch.exp((log_ndtr(lo) - log_ndtr(hi)).clamp(max=-1e-12)))
    logp = torch.where(x < -1 + half, log_cdf_upper, torch.where(x > 1 - half, log_sf_lower, log_mid))
    return logp.flatten(1).sum(1)


def gaussian_logp(x: Tensor, mean: Tensor, std: Tensor | float) -> Tensor:
    """log N(x; mean, std^2) summed per example. (B, *D) -> (B,)."""
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    z = (x - mean) / std
    return (-0.5 * z**2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
