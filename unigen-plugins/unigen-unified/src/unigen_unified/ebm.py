"""The contrastive energy-based model (id ``ebm``): a scalar energy E_theta(x), p_theta(x) =
exp(-E_theta(x)) / Z_theta, trained by the contrastive (maximum-likelihood) gradient with persistent
Langevin chains (Hinton 2002; Tieleman 2008; Du & Mordatch 2019, "Implicit Generation and
Generalization in Energy-Based Models"). Balcerak et al. 2025's Energy Matching, which adds an optimal
transport phase before this contrastive term, is :mod:`unigen_unified.energy_matching`.

Loss (Du & Mordatch Eq. 2-3 with their regularizer):

    L = E_data[E(x+)] - E_chains[E(x-)] + alpha (E_data[E(x+)^2] + E_chains[E(x-)^2]),

whose gradient is the log-likelihood gradient -grad log p_theta (x+ ~ data, x- ~ p_theta) plus the
alpha term that keeps energies near zero. Negatives x- come from a persistent replay buffer: each step
takes a batch of stored chains (a fraction ``reinit_prob`` restarted from N(0, I)), runs ``mcmc_steps``
Langevin steps and writes them back.

Langevin MCMC is the time-homogeneous SDE dx = -grad E(x) dtau + sqrt(2) dW, whose stationary law is
p_theta; ``steps`` steps of size h are integrated with the core's ``euler-maruyama`` sampler over the span
T = steps * h (drift T grad E on its unit grid from t=1 to 0, diffusion sqrt(2T)): x <- x - h grad E +
sqrt(2h) xi. The score grad E is autograd's.

``logprob`` is -E(x): log p up to the unknown log Z_theta (``logprob_kind = "unnormalized"``). For 2-D
data, ``normalize_grid = n > 0`` subtracts log Z computed by the midpoint rule on an n x n grid over
[-grid_bound, grid_bound]^2 (:func:`grid_log_partition`), which makes it a normalized density up to the
quadrature error and the mass outside the box.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from unigen import DataInfo
from unigen.plugin import (
    Batch,
    GenerativeModel,
    get_sampler,
    nonnegative_float,
    nonnegative_int,
    one_of,
    positive_float,
    positive_int,
    probability,
)

from .networks import vector_mlp


def langevin(energy: Callable[[Tensor], Tensor], x: Tensor, steps: int, step_size: float,
             generator: torch.Generator | None = None) -> Tensor:
    """``steps`` unadjusted Langevin steps x <- x - h grad E(x) + sqrt(2h) xi from x (B, *D), through the
    registered ``euler-maruyama`` sampler (see the module docstring). Returns detached samples."""
    span = steps * step_size

    def field(y: Tensor, t: Tensor) -> tuple[Tensor, float]:
        with torch.enable_grad():  # the sampler runs under no_grad; the score needs autograd
            y = y.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(y).sum(), y)
        # Euler-Maruyama moves by drift * dt with dt = -1/steps: drift = span * grad E gives -h grad E.
        return span * grad, math.sqrt(2 * span)

    solve = get_sampler("euler-maruyama", kind="sde").solve
    return solve(field, x, steps, generator=generator, denoise_last=False)


def grid_log_partition(energy: Callable[[Tensor], Tensor], bound: float, n: int, device: Any = "cpu") -> Tensor:
    """log Z = log int exp(-E(x)) dx over [-bound, bound]^2 by the midpoint rule on an n x n grid."""
    width = 2 * bound / n
    centres = -bound + width * (torch.arange(n, device=device, dtype=torch.float64) + 0.5)
    grid = torch.cartesian_prod(centres, centres).float()  # (n^2, 2)
    with torch.no_grad():
        neg_e = torch.cat([-energy(chunk).double() for chunk in grid.split(4096)])
    return torch.logsumexp(neg_e, 0) + 2 * math.log(width)


@attrs.frozen(kw_only=True)
class EBMConfig:
    hidden: int = positive_int(128)  # width of the energy MLP E_theta
    depth: int = positive_int(3)  # hidden layers of the energy MLP
    # Langevin steps per training step (persistent chains need few), and their step size h.
    # h = 0.003 keeps the discretisation bias below the width of thin structures (moons: std 0.1).
    mcmc_steps: int = positive_int(10)
    step_size: float = positive_float(0.003)  # h of x <- x - h grad E(x) + sqrt(2h) xi (see mcmc_steps)
    buffer_size: int = positive_int(8192)  # persistent chains in the replay buffer (Du & Mordatch)
    # Fraction of chains restarted from N(0, I) each step (Du & Mordatch use 5%).
    reinit_prob: float = probability(0.05)
    # Weight of the E^2 regularizer (Du & Mordatch Sec. 3.3).
    alpha: float = nonnegative_float(0.1)
    # Sampling: chains of `steps` (default_steps) Langevin steps from the buffer ("buffer") or N(0, I) ("noise").
    sample_init: str = one_of("noise", ("noise", "buffer"))
    # 2-D data only: > 0 normalizes logprob on an n x n grid over [-grid_bound, grid_bound]^2.
    normalize_grid: int = nonnegative_int(0)
    grid_bound: float = positive_float(4.0)  # half-width of the normalize_grid square


class EBM(GenerativeModel):
    family = "unified"
    paradigm = "score"
    logprob_kind = "unnormalized"
    Config = EBMConfig
    default_steps = 300
    data_kinds = ("vector",)
    trainer_defaults = {"lr": 1e-3}
    replay: Tensor  # buffer (buffer_size, *D): the persistent Langevin chains

    def __init__(self, config: EBMConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        if config.normalize_grid and data.dim != 2:
            raise ValueError(f"normalize_grid needs 2-D data; {data.name} has {data.dim} dimensions")
        self.energy_net = vector_mlp(data.dim, 1, config.hidden, config.depth)
        self.register_buffer("replay", torch.randn(config.buffer_size, *data.shape))  # persistent chains

    def energy(self, x: Tensor) -> Tensor:
        """E_theta(x): (B, *D) -> (B,)."""
        return self.energy_net(x.flatten(1)).squeeze(1)

    def negatives(self, n: int) -> Tensor:
        """n chains from the replay buffer advanced by ``mcmc_steps`` Langevin steps (written back in training)."""
        c = self.config
        idx = torch.randint(0, c.buffer_size, (n,), device=self.replay.device)
        start = self.replay[idx].clone()
        fresh = torch.rand(n, device=start.device) < c.reinit_prob
        start[fresh] = torch.randn_like(start[fresh])
        out = langevin(self.energy, start, c.mcmc_steps, c.step_size)
        if self.training:
            self.replay[idx] = out
        return out

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        pos = self.energy(batch.x)
        neg = self.energy(self.negatives(batch.x.shape[0]))
        return pos.mean() - neg.mean() + self.config.alpha * (pos.pow(2).mean() + neg.pow(2).mean())

    # -- the operations -----------------------------------------------------------------------------
    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Langevin chains started at z (B, *D), ``steps`` steps of size ``step_size``."""
        return langevin(self.energy, z, steps or self.default_steps, self.config.step_size)

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        if self.config.sample_init == "buffer":
            idx = torch.randint(0, self.config.buffer_size, (num_samples,), device=self.replay.device)
            z = self.replay[idx].clone()
        else:
            z = torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype)
        return self.reverse(z, steps)

    def log_partition(self, n: int | None = None, bound: float | None = None) -> Tensor:
        """log Z_theta on the grid (2-D data): see :func:`grid_log_partition`."""
        if self.data.dim != 2:
            self.unsupported("log_partition", "the grid normalizer is computed for 2-D data only")
        return grid_log_partition(self.energy, bound or self.config.grid_bound, n or self.config.normalize_grid or 200,
                                  self.device)

    def logprob(self, x: Tensor) -> Tensor:
        """-E(x), unnormalized; minus the grid's log Z when ``normalize_grid`` > 0."""
        out = -self.energy(x)
        if self.config.normalize_grid:
            out = out - self.log_partition().to(out.dtype)
        return out

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> EBMConfig:
        return EBMConfig(hidden=32, depth=2, mcmc_steps=5, buffer_size=256)
