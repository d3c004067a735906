"""Variational autoencoder (Kingma & Welling 2014) and beta-VAE (Higgins et al. 2017).

q(z|x) = N(mu(x), diag sigma(x)^2), p(z) = N(0, I), p(x|z) a discretized Gaussian over the data's K
levels (a Gaussian density for vectors). Training minimises the negative ELBO

    -ELBO = -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)),
    KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)          (Kingma & Welling, App. B)

with one reparameterized sample z = mu + sigma * eps. beta = 1 is the VAE; beta-VAE changes only beta.
beta-VAE's default depends on the data: 4 on images (Higgins et al. 2017), 1 on vectors, where the
decoder is a Gaussian that learns its variance: for Gaussian-like data each nat of rate KL buys at most
one nat of log-likelihood, so any beta > 1 makes the uninformative posterior q(z|x) = p(z) optimal
(measured on moons, 500 steps: MMD^2 to held-out points 0.054 untrained -> 0.057 with beta = 4, -> 0.022
with beta = 1; ``tests/contract/test_defaults.py``).
``logprob`` is the ELBO (a bound) or, with ``logprob_samples = k > 1``, the importance-weighted
estimate of Burda et al. 2016:  log 1/k sum_i p(x, z_i) / q(z_i | x),  z_i ~ q(z|x).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from torch import Tensor

from unigen import DataInfo
from unigen.plugin import Batch, GenerativeModel, nonnegative_float, positive_int

from .likelihood import LOG_SCALE_MIN, decoder_logp
from .networks import decoder, encoder


@attrs.frozen(kw_only=True)
class VAEConfig:
    z_dim: int = positive_int(16)  # dimension of the latent z ~ N(0, I)
    width: int = positive_int(32)  # conv channels
    hidden: int = positive_int(256)  # MLP width (vectors)
    # Weight of the KL term in the loss (1: the ELBO); None: 4 on images, 1 on vectors (beta-VAE's default).
    beta: float | None = nonnegative_float(1.0, optional=True)
    # 1: logprob is the ELBO (a bound); k > 1: the importance-weighted estimate with k samples.
    logprob_samples: int = positive_int(1)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) per example. (B, d) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


class VAE(GenerativeModel):
    family = "vae"
    paradigm = "likelihood"
    logprob_kind = "bound"  # the ELBO; logprob_samples > 1: the importance-weighted estimate (IWAE)
    logprob_variants = {"bound": {"logprob_samples": 1}, "estimate": {"logprob_samples": 64}}
    logprob_discrete = True  # the discretized decoder gives probabilities of the K levels
    Config = VAEConfig

    def __init__(self, config: VAEConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.beta = config.beta if config.beta is not None else (4.0 if data.is_image else 1.0)
        self.encoder = encoder(data, 2 * config.z_dim, config.width, config.hidden)
        self.decoder = decoder(data, config.z_dim, config.width, config.hidden)
        if config.logprob_samples > 1:
            self.logprob_kind = "estimate"

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> VAEConfig:
        return cls.Config(z_dim=4, width=8, hidden=32)

    # -- pieces -------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, z), (B, z)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        out = self.decoder(z)  # (B, 2, *D)
        return out[:, 0], out[:, 1]

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        mean, log_scale = self.decode(z)
        return decoder_logp(x, mean, log_scale, self.data.levels)

    def elbo_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.log_likelihood(x, z), gaussian_kl(mu, logvar)

    # -- the five operations --------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Encode and reparameterize: z ~ q(z|x), (B, z_dim)."""
        mu, logvar = self.encode(x)
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """The decoder's mean, clamped to the data range."""
        mean, _ = self.decode(z)
        return mean.clamp(-1, 1) if self.data.is_image else mean

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """Negative (beta-)ELBO in nats per dimension, averaged over the batch."""
        rec, kl = self.elbo_terms(batch.x)
        return (-rec + self.beta * kl).mean() / self.data.dim

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        """x ~ p(x|z), z ~ p(z). Images: the decoder's mean (the convention for pictures). Vectors: a
        draw from the Gaussian decoder N(mean, scale^2), which is the model; the mean alone collapses onto
        a curve, or onto one point when the decoder's variance explains the data and z is ignored."""
        z = torch.randn(num_samples, self.config.z_dim, device=self.device, dtype=self.dtype)
        if self.data.is_image:
            return self.reverse(z)
        mean, log_scale = self.decode(z)
        return mean + log_scale.clamp_min(LOG_SCALE_MIN).exp() * torch.randn_like(mean)

    def logprob(self, x: Tensor) -> Tensor:
        """The ELBO (beta = 1, whatever the training beta), or the IWAE estimate with k samples."""
        k = self.config.logprob_samples
        if k == 1:
            rec, kl = self.elbo_terms(x)
            return rec - kl
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        terms = []
        for _ in range(k):
            eps = torch.randn_like(mu)
            z = mu + eps * std
            log_q = (-0.5 * eps**2 - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(1)
            log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(1)
            terms.append(self.log_likelihood(x, z) + log_pz - log_q)
        return torch.logsumexp(torch.stack(terms), 0) - math.log(k)

    def latent(self, x: Tensor) -> Tensor:
        return self.encode(x)[0]


@attrs.frozen(kw_only=True)
class BetaVAEConfig(VAEConfig):
    # KL weight; None: 4 on images (Higgins et al. 2017: beta > 1 trades reconstruction for a more factorised
    # latent), 1 on vectors (with a Gaussian decoder of learned variance any beta > 1 collapses the posterior).
    beta: float | None = nonnegative_float(None, optional=True)


class BetaVAE(VAE):
    """A VAE whose KL term is weighted by beta (default: 4 on images, 1 on vectors): one number changed."""

    Config = BetaVAEConfig

