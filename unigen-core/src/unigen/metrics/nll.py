"""Negative log-likelihood in bits per dimension, derived in this one place.

Convention of RealNVP and Glow: x counted in pixel levels {0..K-1}, uniform dequantization
v + u with u ~ U[0, 1)^D, and bits/dim = -log2 p(v + u) / D. A model whose ``logprob`` is a density
on the [-1, 1] data space (bin width Delta = 2 / (K - 1)) is converted by the change of variables
log p_levels = log p_data + D log Delta. A model whose ``logprob`` is already log P(v) over the
discrete levels (``logprob_discrete``) needs no conversion: log P(v) <= the dequantized bound.
Uniform over K levels gives exactly log2 K bits/dim.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..model import DataInfo


def bin_width(levels: int) -> float:
    return 2.0 / (levels - 1)


def dequantize(x: Tensor, levels: int | None, generator: torch.Generator | None = None) -> Tensor:
    """Add uniform noise over one quantization bin to data in [-1, 1] (no-op for continuous data)."""
    if levels is None:
        return x
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + (u - 0.5) * bin_width(levels)


def bits_per_dim(logp_nats: Tensor, info: DataInfo, discrete: bool) -> Tensor:
    """Per-example bits/dim from per-example log-likelihoods in nats."""
    d = info.dim
    logp = logp_nats.double()
    if info.levels is not None and not discrete:
        logp = logp + d * math.log(bin_width(info.levels))
    return -logp / (d * math.log(2.0))
