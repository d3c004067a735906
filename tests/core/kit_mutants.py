"""Tiny 2-D flows for the kit's own tests: two correct ones and four mutants the contract must fail.

A plugin module (it registers its models through ``unigen_register_models``); the test copies it next to
a test module that runs the contract on it with pytester.
"""

from __future__ import annotations

import math
import os

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from unigen import GenerativeModel, ModelSpec, hookimpl


def normal_logpdf(z: Tensor) -> Tensor:
    return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


@attrs.frozen(kw_only=True)
class ToyConfig:
    hidden: int = attrs.field(default=16, validator=[v.instance_of(int), v.gt(0)])
    scale: float = attrs.field(default=0.3, validator=[v.instance_of(float), v.ge(0)])


class Affine(GenerativeModel):
    """z = (x - b) exp(-s), elementwise; log p(x) = log N(z) - sum s."""

    family = "toy"
    paradigm = "flow"
    logprob_kind = "exact"
    bijective = True
    data_kinds = ("vector",)
    Config = ToyConfig

    def __init__(self, config: ToyConfig, data) -> None:
        super().__init__(config, data)
        self.s = nn.Parameter(config.scale * torch.randn(data.dim))
        self.b = nn.Parameter(config.scale * torch.randn(data.dim))

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        return (x - self.b) * torch.exp(-self.s)

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        return z * torch.exp(self.s) + self.b

    def log_det(self, x: Tensor) -> Tensor:
        return -self.s.sum().expand(x.shape[0])

    def logprob(self, x: Tensor) -> Tensor:
        return normal_logpdf(self.forward(x)) + self.log_det(x)

    def loss(self, batch, group=None) -> Tensor:
        return -self.logprob(batch.x).mean()

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, self.data.dim, dtype=self.s.dtype))


class FlippedLogDet(Affine):
    """Mutant: the log-determinant's sign flipped."""

    def log_det(self, x: Tensor) -> Tensor:
        return -super().log_det(x)


class SeedIgnoringSampler(Affine):
    """Mutant: the sampler draws its noise from the operating system, whatever the seed."""

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        g = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
        return self.reverse(torch.randn(num_samples, self.data.dim, generator=g, dtype=self.s.dtype))


class OffByConstant(Affine):
    """Mutant: an "exact" logprob half a nat too high, everywhere."""

    bijective = False  # so the density check alone must catch it

    def logprob(self, x: Tensor) -> Tensor:
        return super().logprob(x) + 0.5


class MAF(GenerativeModel):
    """A masked autoregressive flow with one MADE (Papamakarios et al. 2017; Germain et al. 2015):
    z_i = (x_i - mu_i(x_<i)) exp(-alpha_i(x_<i)), log|det dz/dx| = -sum_i alpha_i."""

    family = "toy"
    paradigm = "flow"
    logprob_kind = "exact"
    bijective = True
    data_kinds = ("vector",)
    Config = ToyConfig
    shift = 0  # 1: the output mask lets x_i see itself (the mutant)

    def __init__(self, config: ToyConfig, data) -> None:
        super().__init__(config, data)
        d, h = data.dim, config.hidden
        m_in = torch.arange(1, d + 1)
        m_hidden = torch.arange(h) % max(1, d - 1) + 1
        self.register_buffer("mask1", (m_hidden[:, None] >= m_in[None]).float())  # (H, D)
        m_out = torch.arange(1, d + 1).repeat(2)
        self.register_buffer("mask2", (m_out[:, None] + self.shift > m_hidden[None]).float())  # (2D, H)
        self.w1 = nn.Parameter(torch.randn(h, d) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(h))
        self.w2 = nn.Parameter(config.scale * torch.randn(2 * d, h) / math.sqrt(h))
        self.b2 = nn.Parameter(config.scale * torch.randn(2 * d))

    def made(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(x @ (self.w1 * self.mask1).T + self.b1)  # (B, H)
        mu, alpha = (h @ (self.w2 * self.mask2).T + self.b2).chunk(2, dim=1)  # (B, D) each
        return mu, alpha

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        mu, alpha = self.made(x)
        return (x - mu) * torch.exp(-alpha)

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        x = torch.zeros_like(z)
        for i in range(z.shape[1]):  # x_i needs x_<i only
            mu, alpha = self.made(x)
            x = x.clone()
            x[:, i] = z[:, i] * torch.exp(alpha[:, i]) + mu[:, i]
        return x

    def logprob(self, x: Tensor) -> Tensor:
        mu, alpha = self.made(x)
        return normal_logpdf((x - mu) * torch.exp(-alpha)) - alpha.sum(1)

    def loss(self, batch, group=None) -> Tensor:
        return -self.logprob(batch.x).mean()

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, self.data.dim, dtype=self.w1.dtype))


class ShiftedMADE(MAF):
    """Mutant: the MADE's output mask shifted by one, so x_i enters its own mu_i and alpha_i."""

    shift = 1


MODELS = {"affine": Affine, "maf": MAF, "flipped-logdet": FlippedLogDet, "shifted-made": ShiftedMADE,
          "seedless": SeedIgnoringSampler, "offset": OffByConstant}


@hookimpl
def unigen_register_models(register):
    for model_id, cls in MODELS.items():
        register(ModelSpec(id=model_id, model_cls=cls, description="the contract kit's test model"))
