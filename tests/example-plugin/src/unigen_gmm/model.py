"""A mixture of K diagonal Gaussians, fitted by gradient descent on the exact negative log-likelihood.

    log p(x) = logsumexp_k [ log pi_k + sum_d log N(x_d; mu_kd, sigma_kd^2) ]

``forward`` returns the responsibilities p(k | x); ``reverse`` maps standard normal noise and a
component index to data; ``sample`` draws k ~ pi then x ~ N(mu_k, sigma_k^2).
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import Batch, GenerativeModel, positive_float, positive_int


@attrs.frozen(kw_only=True)
class GMMConfig:
    components: int = positive_int(16)
    init_scale: float = positive_float(1.0)


class GMM(GenerativeModel):
    family = "mixture"
    paradigm = "likelihood"
    logprob_kind = "exact"
    data_kinds = ("vector",)
    Config = GMMConfig
    trainer_defaults = {"lr": 2e-2}

    def __init__(self, config: GMMConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        k, d = config.components, data.dim
        self.logits = nn.Parameter(torch.zeros(k))
        self.mu = nn.Parameter(torch.randn(k, d) * config.init_scale)
        self.log_sigma = nn.Parameter(torch.zeros(k, d))

    def _component_logp(self, x: Tensor) -> Tensor:
        x = x.flatten(1)[:, None]  # (B, 1, D)
        z = (x - self.mu) * torch.exp(-self.log_sigma)  # (B, K, D)
        return (-0.5 * z**2 - self.log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)  # (B, K)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Responsibilities p(k | x), (B, K)."""
        joint = self._component_logp(x) + torch.log_softmax(self.logits, 0)
        return torch.softmax(joint, dim=1)

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Noise (B, D) -> data, each row through a component drawn from the mixture weights."""
        k = torch.multinomial(torch.softmax(self.logits, 0), z.shape[0], replacement=True)
        x = self.mu[k] + torch.exp(self.log_sigma[k]) * z
        return x.view(z.shape[0], *self.data.shape)

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        return -self.logprob(batch.x).mean() / self.data.dim

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, self.data.dim, device=self.device))

    def logprob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self._component_logp(x) + torch.log_softmax(self.logits, 0), dim=1)
