"""Wasserstein gradient flow of an MMD, as JKO steps on a pushforward map (Jordan, Kinderlehrer & Otto
1998; pushforward JKO: Mokrov et al. 2021, Fan et al. 2022; MMD flows: Arbel et al. 2019).

A map T_theta carries the prior N(0, I) to rho = T_theta # N(0, I). One JKO step with step size tau is

    rho_{k+1} = argmin_rho  F(rho) + W_2^2(rho, rho_k) / (2 tau),    F(rho) = MMD^2(rho, data),

and with rho = T # prior and rho_k = T_k # prior, W_2^2(rho, rho_k) <= E_z ||T(z) - T_k(z)||^2 (the
coupling through the shared z), which gives the proximal objective minimised here:

    L(theta) = MMD^2(T_theta(z), x) + E_z ||T_theta(z) - T_k(z)||^2 / (2 tau),   z ~ N(0, I), x ~ data.

The inner problem takes ``jko_every`` optimizer steps; then ``after_step`` freezes the current map as
T_k (a parameter-free copy, saved with the weights). MMD is :func:`unigen.metrics.mmd.mmd2`, the
unbiased estimator with the multi-scale RBF kernel k = sum_s exp(-|a - b|^2 / (2 s^2)), s in ``scales``.

``unbalanced-ot`` (:mod:`.unbalanced_ot`) overrides only ``discrepancy``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import MMD_SCALES as SCALES
from unigen.plugin import Batch, GenerativeModel, mmd2, positive_float, positive_int

from .networks import vector_mlp


def _scales(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value or not all(isinstance(s, float) and s > 0 for s in value):
        raise ValueError(f"'scales' must be a non-empty tuple of positive floats, got {value!r}")


@attrs.frozen(kw_only=True)
class WassersteinFlowConfig:
    hidden: int = positive_int(128)  # width of the transport map's MLP T
    depth: int = positive_int(3)  # hidden layers of the transport map's MLP
    # JKO step size tau: larger steps move the map further per outer step.
    tau: float = positive_float(1.0)
    # Optimizer steps spent on each JKO subproblem before T_k is updated.
    jko_every: int = positive_int(20)
    # RBF bandwidths of the MMD (the core metric's scales by default).
    scales: tuple[float, ...] = attrs.field(default=SCALES, converter=tuple, validator=_scales)


class WassersteinFlow(GenerativeModel):
    family = "unified"
    paradigm = "implicit"
    logprob_kind = "none"
    no_logprob_reason = "the transport map is not invertible: T # N(0, I) has no tractable density"
    Config = WassersteinFlowConfig
    data_kinds = ("vector",)
    trainer_defaults = {"lr": 1e-3}

    def __init__(self, config: WassersteinFlowConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.transport = vector_mlp(data.dim, data.dim, config.hidden, config.depth)
        self.previous = vector_mlp(data.dim, data.dim, config.hidden, config.depth)  # T_k of the JKO step
        self.previous.load_state_dict(self.transport.state_dict())
        self.previous.requires_grad_(False)

    def push(self, z: Tensor, net: nn.Module | None = None) -> Tensor:
        """T(z): (B, *D) -> (B, *D)."""
        return (net or self.transport)(z.flatten(1)).view_as(z)

    def discrepancy(self, y: Tensor, x: Tensor) -> Tensor:
        """F: MMD^2 between model samples y (n, *D) and data x (m, *D)."""
        return mmd2(y, x, self.config.scales).to(y.dtype)

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        x = batch.x
        z = torch.randn_like(x)
        y = self.push(z)
        with torch.no_grad():
            y_prev = self.push(z, self.previous)
        proximal = (y - y_prev).flatten(1).pow(2).sum(1).mean() / (2 * self.config.tau)
        return self.discrepancy(y, x) + proximal

    def after_step(self, group: str, step: int) -> None:
        """End of a JKO subproblem every ``jko_every`` steps: T_k <- T."""
        if (step + 1) % self.config.jko_every == 0:
            self.previous.load_state_dict(self.transport.state_dict())

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """The map T: z (B, *D) -> x (B, *D)."""
        return self.push(z)

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype))

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> Any:
        return attrs.evolve(cls.Config(), hidden=32, depth=2)
