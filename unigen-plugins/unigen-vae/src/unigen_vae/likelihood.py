"""Decoder likelihoods p(x | z), per example in nats.

Images: the discretized Gaussian of Ho et al. 2020 (Eq. 13): the probability of the bin of width
2/(K-1) around each pixel level, with the edge bins extended to -inf and +inf, so log p(x|z) is a log
probability of the discrete data and the ELBO bounds log P(x) over the K levels.
Vectors: a Gaussian density.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.special import log_ndtr, ndtr

LOG_SCALE_MIN = -7.0


def discretized_gaussian_logp(x: Tensor, mean: Tensor, log_scale: Tensor, levels: int) -> Tensor:
    """log P(x) of the bins around x under N(mean, exp(log_scale)^2), summed per example.

    x, mean, log_scale: (B, *D) with x on the grid {-1, ..., 1} of ``levels`` values. Returns (B,).
    """
    half = 1.0 / (levels - 1)
    inv = torch.exp(-log_scale)
    upper = (x - mean + half) * inv
    lower = (x - mean - half) * inv
    log_cdf_upper = log_ndtr(upper)  # bottom bin: P(X <= x + half)
    log_sf_lower = log_ndtr(-lower)  # top bin: P(X > x - half)
    delta = ndtr(upper) - ndtr(lower)
    # Where the bin mass underflows, use the density at the bin centre times the bin width.
    log_pdf_mid = -0.5 * ((x - mean) * inv) ** 2 - log_scale - 0.5 * math.log(2 * math.pi) + math.log(2 * half)
    mid = torch.where(delta > 1e-6, torch.log(delta.clamp_min(1e-12)), log_pdf_mid)
    logp = torch.where(x < -1 + half, log_cdf_upper, torch.where(x > 1 - half, log_sf_lower, mid))
    return logp.flatten(1).sum(1)


def gaussian_logp(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log N(x; mean, exp(log_scale)^2) summed per example. (B, *D) -> (B,)."""
    z = (x - mean) * torch.exp(-log_scale)
    return (-0.5 * z**2 - log_scale - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def decoder_logp(x: Tensor, mean: Tensor, log_scale: Tensor, levels: int | None) -> Tensor:
    log_scale = log_scale.clamp_min(LOG_SCALE_MIN)
    if levels is None:
        return gaussian_logp(x, mean, log_scale)
    return discretized_gaussian_logp(x, mean, log_scale, levels)
