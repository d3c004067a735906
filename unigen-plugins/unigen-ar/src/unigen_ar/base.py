"""What every autoregressive model of this family shares: the factorisation, its loss, its sampler.

An image's D = C*H*W pixels, counted in levels v in {0..K-1} (:func:`unigen.data.to_levels`), are
ordered in raster order (row by row, left to right, colour channels in turn within a pixel) and

    log P(v) = sum_{d=1..D} log P(v_d | v_<d)            (van den Oord et al. 2016, Eq. 1)

with each conditional a softmax over the K levels. ``forward(x)`` returns the logits of all D
conditionals at once, shape (B, K, C, H, W), computed in one pass from the data ("teacher forcing");
``logprob(x)`` is the exact log P(v) in nats (``logprob_discrete``: a pmf over the levels, so
bits/dim = -log2 P(v) / D with no dequantization term); ``loss`` is the mean per-position
cross-entropy in nats per dimension.

Generation is sequential, one position after another. ``reverse(u)`` maps uniform noise
u in [0, 1)^D to an image by inverse-CDF sampling of each conditional,

    v_d = min { k : F_d(k) > u_d },   F_d(k) = sum_{j<=k} P_T(j | v_<d),

so that the map noise -> data is deterministic and ``sample(n)`` is ``reverse`` of fresh uniforms.
P_T is the conditional at temperature T (logits / T), restricted to the ``top_k`` most likely
levels when top_k > 0 (Fan et al. 2018); T = 1, top_k = 0 draws from the model itself. The
temperature and top-k change sampling only, never ``logprob``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from unigen import DataInfo, UnigenError
from unigen.plugin import Batch, GenerativeModel, from_levels, to_levels


def sample_level(logits: Tensor, u: Tensor, temperature: float = 1.0, top_k: int = 0) -> Tensor:
    """Inverse-CDF draw of one level per row: logits (B, K), u (B,) in [0, 1) -> levels (B,) long.

    Computed in float64 so that two numerically equal conditionals (e.g. with and without a
    key/value cache) pick the same level for the same u."""
    k = logits.shape[-1]
    scaled = logits.double() / temperature
    if 0 < top_k < k:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]  # (B, 1) the k-th largest logit
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    cdf = torch.softmax(scaled, dim=-1).cumsum(-1)  # (B, K)
    level = (cdf <= u.double()[:, None] * cdf[:, -1:]).sum(-1)  # number of levels whose F <= u
    return level.clamp(max=k - 1)


def raster_index(shape: tuple[int, int, int], c: int, i: int, j: int) -> int:
    """Position of pixel (c, i, j) of a (C, H, W) image in the generation order."""
    channels, _, width = shape
    return (i * width + j) * channels + c


class ARModel(GenerativeModel, metaclass=ABCMeta):
    """Base class: a model defines ``logits(v)`` and ``generate(u)``; this class turns them into
    the five operations. Subclasses' configs carry ``temperature`` and ``top_k``."""

    family = "autoregressive"
    paradigm = "likelihood"
    logprob_kind = "exact"
    logprob_discrete = True
    data_kinds = ("image",)
    default_steps = None  # generation takes D network steps; there is nothing to choose

    def __init__(self, config, data: DataInfo) -> None:
        super().__init__(config, data)
        if data.levels is None or not data.is_image:
            raise UnigenError(
                f"{type(self).__name__} models discrete images (C, H, W) with K levels; "
                f"dataset {data.name!r} has shape {data.shape} and levels {data.levels}"
            )
        self.levels = data.levels

    # -- what a model defines -------------------------------------------------------------------
    @abstractmethod
    def logits(self, v: Tensor) -> Tensor:
        """Levels (B, C, H, W) long -> logits of every conditional P(v_d | v_<d), (B, K, C, H, W)."""

    @abstractmethod
    def generate(self, u: Tensor) -> Tensor:
        """Uniforms (B, C, H, W) -> levels (B, C, H, W) long, one position at a time."""

    # -- shared pieces ---------------------------------------------------------------------------
    def cross_entropy(self, x: Tensor) -> Tensor:
        """-log P(v_d | v_<d) for every position, (B, C, H, W), in nats."""
        v = to_levels(x, self.levels)
        return F.cross_entropy(self.logits(v), v, reduction="none")

    def draw(self, logits: Tensor, u: Tensor) -> Tensor:
        return sample_level(logits, u, self.config.temperature, self.config.top_k)

    # -- the five operations --------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """The logits of all D conditionals given the data, (B, K, C, H, W). ``t`` is unused."""
        return self.logits(to_levels(x, self.levels))

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Uniform noise u in [0, 1), (B, C, H, W) -> images in [-1, 1] by inverse-CDF sampling."""
        return from_levels(self.generate(z), self.levels, z.dtype)

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """Mean cross-entropy in nats per dimension."""
        return self.cross_entropy(batch.x).mean()

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        u = torch.rand(num_samples, *self.data.shape, device=self.device, dtype=self.dtype)
        return self.reverse(u)

    def logprob(self, x: Tensor) -> Tensor:
        """Exact log P(v) of the discrete levels, in nats, (B,)."""
        return -self.cross_entropy(x).flatten(1).sum(1)
