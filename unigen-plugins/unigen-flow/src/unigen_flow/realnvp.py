"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2017): a multi-scale stack of affine couplings.

Change of variables (Eq. 3): with z = f(x) and a standard normal base p_Z,

    log p_X(x) = log p_Z(f(x)) + log|det df/dx|,

summed over every layer's log-determinant (:mod:`unigen_flow.layers`). ``logprob`` is therefore exact: a
density on the [-1, 1] data space (``logprob_discrete = False``); for discrete images it is evaluated, and
trained, on uniformly dequantized data (:func:`unigen.metrics.nll.dequantize`), so the NLL metric's
bits/dim is the usual dequantized bound of RealNVP/Glow.

Images: the logit preprocessing of Sec. 4.1, p = (x + 1 + Delta/2) / (2 + Delta) (the dequantized range of
bin width Delta mapped onto [0, 1]), y = logit(alpha + (1 - 2 alpha) p), with its log-determinant. The
density is supported on the box p in (-alpha/(1-2 alpha), (1-alpha)/(1-2 alpha)), slightly larger than the
data range, so its integral over the data range is at most 1 and the NLL is an upper bound, as in RealNVP. Then per scale (Sec. 3.6): ``couplings`` checkerboard couplings,
a squeeze, ``couplings`` channel-wise couplings, and half of the channels factored out to the base
(28x28 -> 4x14x14 -> half kept -> 8x7x7 ...); the last scale has ``couplings + 1`` checkerboard couplings.
Every coupling is preceded by an ActNorm. Vectors: couplings on alternating halves, with ActNorm.

``forward(x)`` returns z, shape (B, *D) (the factored-out pieces concatenated in order); ``reverse(z)`` is
the exact inverse.
"""

from __future__ import annotations

import math
from typing import cast

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from unigen import ConfigError, DataInfo
from unigen.plugin import Batch, GenerativeModel, bin_width, dequantize, positive_int, resolution_levels

from .layers import ActNorm, AffineCoupling, ConvNet, Squeeze, VectorNet, channel_mask, checkerboard

FlowLayer = ActNorm | AffineCoupling | Squeeze  # forward(x) -> (y, log|det|), inverse(y) -> x


@attrs.frozen(kw_only=True)
class RealNVPConfig:
    # Couplings per stage; the paper uses 3 (4 on the last scale).
    couplings: int = positive_int(3)
    # Scales for images; 3 gives 28 -> 14 -> 7 (and 8 -> 4 -> 2 for digits). None: from the
    # resolution (unigen.plugin.resolution_levels from 2: 2 below 32 px, 32 -> 16 -> 8 at 32 px, 4 at 64).
    scales: int | None = positive_int(None, optional=True)
    width: int = positive_int(64)  # conv channels of s, t
    hidden: int = positive_int(128)  # MLP width (vectors)
    depth: int = positive_int(2)  # MLP hidden layers
    # Vector couplings in all (alternating halves).
    vector_couplings: int = positive_int(8)
    # Logit preprocessing for images; RealNVP uses alpha = 0.05.
    logit_alpha: float = attrs.field(default=0.05, validator=[v.instance_of(float), v.ge(0), v.lt(0.5)])


class RealNVP(GenerativeModel):
    family = "flow"
    paradigm = "likelihood"
    logprob_kind = "exact"
    logprob_discrete = False  # a density on [-1, 1]; the NLL metric dequantizes
    bijective = True  # forward is f onto N(0, I); logprob is the change of variables of f
    Config = RealNVPConfig
    default_steps = None
    trainer_defaults = {"lr": 1e-3}

    def __init__(self, config: RealNVPConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.stages = nn.ModuleList()
        self.splits: list[bool] = []
        if data.is_image:
            self._build_image(config, data)
        else:
            d = data.dim
            layers: list[nn.Module] = []
            for i in range(config.vector_couplings):
                layers += [ActNorm(d, image=False),
                           AffineCoupling(channel_mask(d, i % 2, image=False), VectorNet(d, config.hidden, config.depth), d)]
            self.stages.append(nn.ModuleList(layers))
            self.splits.append(False)

    def _build_image(self, config: RealNVPConfig, data: DataInfo) -> None:
        c, h, w = data.shape
        scales = config.scales or resolution_levels(h, 2)
        if h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
            raise ConfigError(f"'scales' = {scales} needs H, W divisible by {2 ** (scales - 1)}; "
                              f"the data is {h}x{w}")
        k = config.couplings
        for level in range(scales):
            last = level == scales - 1
            layers: list[nn.Module] = []
            for i in range(k + 1 if last else k):
                layers += [ActNorm(c, image=True),
                           AffineCoupling(checkerboard(h, w, i % 2), ConvNet(c, config.width), c)]
            if not last:
                layers.append(Squeeze())
                c, h, w = 4 * c, h // 2, w // 2
                for i in range(k):
                    layers += [ActNorm(c, image=True),
                               AffineCoupling(channel_mask(c, i % 2, image=True), ConvNet(c, config.width), c)]
                c //= 2  # half of the channels leave for the base here
            self.stages.append(nn.ModuleList(layers))
            self.splits.append(not last)

    # -- the bijection --------------------------------------------------------------------------
    def _stage_layers(self) -> list[list[FlowLayer]]:
        """Each stage's layers in order (nn.ModuleList is not generic in torch's stubs: the cast names
        the element type the constructor put there)."""
        return [cast("list[FlowLayer]", list(stage.children())) for stage in self.stages]

    def _bounds(self) -> tuple[float, float]:
        """Data range of the dequantized data: [-1 - Delta/2, 1 + Delta/2]."""
        half = bin_width(self.data.levels) / 2 if self.data.levels else 0.0
        return -1.0 - half, 2.0 + 2 * half

    def _preprocess(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x -> logit(alpha + (1 - 2 alpha) p) with its log-determinant (images only)."""
        if not self.data.is_image:
            return x, x.new_zeros(x.shape[0])
        lo, span = self._bounds()
        a = self.config.logit_alpha
        s = a + (1 - 2 * a) * (x - lo) / span
        y = torch.log(s) - torch.log1p(-s)
        # dy/dx = (1 - 2a) / span / (s (1 - s))
        logdet = (math.log((1 - 2 * a) / span) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        return y, logdet

    def _postprocess(self, y: Tensor) -> Tensor:
        if not self.data.is_image:
            return y
        lo, span = self._bounds()
        a = self.config.logit_alpha
        return (torch.sigmoid(y) - a) / (1 - 2 * a) * span + lo

    def flow(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, *D) -> (z (B, *D), log|det dz/dx| (B,))."""
        h, logdet = self._preprocess(x)
        pieces = []
        for layers, split in zip(self._stage_layers(), self.splits):
            for layer in layers:
                h, ld = layer(h)
                logdet = logdet + ld
            if split:
                out, h = h.chunk(2, dim=1)  # (B, C/2, H, W) each
                pieces.append(out.flatten(1))
        pieces.append(h.flatten(1))
        return torch.cat(pieces, 1).view(x.shape), logdet

    def inverse(self, z: Tensor) -> Tensor:
        """The exact inverse of :meth:`flow`: z (B, *D) -> x (B, *D)."""
        flat = z.flatten(1)
        shapes = self._piece_shapes()
        sizes = [math.prod(s) for s in shapes]
        pieces = [p.view(z.shape[0], *s) for p, s in zip(flat.split(sizes, 1), shapes)]
        h = pieces.pop()
        for layers, split in zip(reversed(self._stage_layers()), reversed(self.splits)):
            if split:
                h = torch.cat([pieces.pop(), h], 1)
            for layer in reversed(layers):
                h = layer.inverse(h)
        return self._postprocess(h)

    def _piece_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the factored-out pieces, in the order :meth:`flow` emits them."""
        if not self.data.is_image:
            return [tuple(self.data.shape)]
        c, h, w = self.data.shape
        shapes: list[tuple[int, ...]] = []
        for split in self.splits:
            if split:
                c, h, w = 4 * c, h // 2, w // 2
                shapes.append((c // 2, h, w))
                c //= 2
        return shapes + [(c, h, w)]

    # -- the five operations --------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Data -> base noise z = f(x), shape (B, *D) (``t`` is ignored: a discrete flow has no time)."""
        return self.flow(x)[0]

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """z -> x = f^{-1}(z), exactly (not clamped, so forward(reverse(z)) = z)."""
        return self.inverse(z)

    def logprob(self, x: Tensor) -> Tensor:
        """Exact log p(x) in nats, a density on the data space, shape (B,)."""
        z, logdet = self.flow(x)
        log_pz = -0.5 * (z.flatten(1) ** 2).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)
        return log_pz + logdet

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """Negative log-likelihood of uniformly dequantized data, nats per dimension."""
        x = dequantize(batch.x, self.data.levels)
        return -self.logprob(x).mean() / self.data.dim

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        z = torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype)
        x = self.reverse(z)
        return x.clamp(-1, 1) if self.data.is_image else x

    def latent(self, x: Tensor) -> Tensor:
        return self.forward(x).flatten(1)

    @classmethod
    def example_config(cls, data: DataInfo, workdir) -> RealNVPConfig:
        return RealNVPConfig(couplings=2, scales=2, width=16, hidden=32, vector_couplings=4)

