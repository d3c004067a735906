"""Energy Matching (Balcerak et al. 2025, "Energy Matching: Unifying Flow Matching and Energy-Based
Models for Generative Modeling"): one time-independent scalar potential V_theta(x) whose gradient flow
carries noise to data along optimal-transport paths and whose Boltzmann density exp(-V / eps) holds the
data. The network outputs a scalar; every velocity is -grad_x V (autograd), so the field is curl-free.

Time: this repository's convention (t=0 data, t=1 noise; the paper runs tau = 1 - t from noise to data).

Phase 1 (the first ``phase1_steps`` trainer steps), OT conditional flow matching on the gradient
(Tong et al. 2024 and Pooladian et al. 2023 for the minibatch OT coupling; the paper's L_OT):

    (x_0, x_1) ~ pi_B,  the exact OT assignment between a data batch x_0 and a noise batch x_1 ~ N(0, I)
                        under |x_0 - x_1|^2 (:func:`ot_pairs`, scipy's ``linear_sum_assignment``),
    x_t = (1 - t) x_0 + t x_1 + sigma xi,   t ~ U[0, 1],   xi ~ N(0, I),
    L_OT = E || grad V(x_t) - (x_1 - x_0) ||^2,

i.e. -grad V(x_t) regresses the straight-line velocity x_0 - x_1 that carries noise to data. With OT
pairs the straight paths do not cross, which is what lets one time-independent field carry them.

Phase 2 adds the contrastive (maximum-likelihood) term of the Boltzmann density p(x) ~ exp(-V(x) / eps_max):

    L = L_OT + lambda_CD (E_data V(x) - E_neg V(x~)),

with negatives x~ (detached) drawn by the sampler below: half started from data at t=0 (Langevin at
eps_max), half from noise at t=1 (the whole schedule), as in the authors' 2-D code.

Sampling integrates dx = -grad V(x) d(tau) + sqrt(2 eps(t)) dW with the registered ``euler-maruyama``
sampler from t=1 through t=0 on to t=-``langevin_time``, under the paper's time-dependent temperature

    eps(t) = 0                         for t >= t*           (deterministic transport far from the data),
             eps_max (t* - t) / t*      for 0 <= t < t*       (a linear ramp),
             eps_max                    for t < 0            (Langevin at equilibrium near the data),

with t* = 1 - tau* (the paper's tau* = 0.8: t* = 0.2). ``logprob`` is -V(x) / eps_max, the log of that
Boltzmann density up to log Z (``logprob_kind = "unnormalized"``; ``normalize_grid`` normalises it on a
grid for 2-D data, as :mod:`unigen_unified.ebm` does).

Scales: the toy settings of the authors' code (eps_max = 0.15, sigma = 0.1) are for moons of about three
times this repository's toy scale (unit variance); temperatures scale with the square of lengths, so
the defaults here are eps_max = 0.02, sigma = 0.05.

Measured against the contrastive ``ebm`` with the same budget (600 steps of batch 256, lr 1e-3, seed 0;
MMD^2 of 1,000 samples to 1,000 fresh points, multi-scale RBF; ``python benchmarks/energy_matching.py
--steps 600 --seeds 0``): moons 0.0142 (energy matching) against 0.0121 (ebm), 8gaussians 0.098 against
0.102 (a 4-component Gaussian mixture fitted by EM: 0.037 and 0.117; N(0, I): 0.113 and 0.266). At this
budget the paper's method does NOT sample better than the contrastive EBM: the two are within the
estimator's noise (about 0.005) on moons and equally under-trained on 8gaussians, and a training step
costs about twice as much (the OT assignment and the double backward of L_OT, plus 2 x 30 sampler
steps for the negatives in phase 2). The authors train their 2-D potential for 20,000 + 2,000 steps;
what this repository tests is that the method is implemented as specified and learns.
"""

from __future__ import annotations

import math
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
    positive_float,
    positive_int,
)

from .ebm import grid_log_partition
from .networks import vector_mlp


def ot_pairs(x0: Tensor, x1: Tensor) -> Tensor:
    """x1 reordered so that (x0[i], x1[i]) is the exact OT assignment of the two batches under the
    squared Euclidean cost (the minibatch coupling of OT-CFM). x0, x1: (B, *D) -> (B, *D)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x0.flatten(1).double(), x1.flatten(1).double()).pow(2)  # (B, B)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return x1[torch.as_tensor(cols[rows.argsort()], device=x1.device)]


def temperature(t: float, t_star: float, eps_max: float) -> float:
    """eps(t) of the module docstring: 0 above t*, a linear ramp to eps_max at t=0, eps_max below 0."""
    if t >= t_star:
        return 0.0
    if t <= 0:
        return eps_max
    return eps_max * (1 - t / t_star)


@attrs.frozen(kw_only=True)
class EnergyMatchingConfig:
    hidden: int = positive_int(128)  # width of the potential MLP V_theta
    depth: int = positive_int(3)  # hidden layers of the potential MLP
    # Trainer steps of pure OT flow matching before the contrastive term joins (the paper's phase 1).
    phase1_steps: int = nonnegative_int(400)
    sigma: float = nonnegative_float(0.05)  # the width of the CFM paths
    cd_weight: float = nonnegative_float(1.0)  # lambda_CD of phase 2
    # The temperature: eps_max and t* = 1 - tau* (paper: tau* = 0.8), and the equilibrium time past t=0.
    eps_max: float = positive_float(0.02)  # eps_max: the temperature at and below t=0 (the Boltzmann density's)
    # t*: the temperature is 0 above t*, rising linearly to eps_max at t=0 (paper: t* = 1 - tau* = 0.2).
    t_star: float = attrs.field(default=0.2, validator=[attrs.validators.instance_of(float), attrs.validators.gt(0),
                                                        attrs.validators.le(1)])
    langevin_time: float = nonnegative_float(0.5)  # sampling continues at eps_max from t=0 to t=-langevin_time
    # Sampler steps of each negative chain in phase 2 (the paper's 2-D code: 200; fewer keep CPU runs short).
    mcmc_steps: int = positive_int(30)
    # 2-D data only: > 0 normalizes logprob on an n x n grid over [-grid_bound, grid_bound]^2.
    normalize_grid: int = nonnegative_int(0)
    grid_bound: float = positive_float(4.0)  # half-width of the normalize_grid square


class EnergyMatching(GenerativeModel):
    family = "unified"
    paradigm = "score"
    logprob_kind = "unnormalized"
    Config = EnergyMatchingConfig
    default_steps = 150  # sampler steps from t=1 to t=-langevin_time: dt = 0.01, the paper's
    data_kinds = ("vector",)
    trainer_defaults = {"lr": 1e-3}
    steps_done: Tensor  # buffer (), long: trainer steps taken, which select the phase

    def __init__(self, config: EnergyMatchingConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        if config.normalize_grid and data.dim != 2:
            raise ValueError(f"normalize_grid needs 2-D data; {data.name} has {data.dim} dimensions")
        self.potential_net = vector_mlp(data.dim, 1, config.hidden, config.depth)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))  # phase 1 -> 2 (resumes too)

    # -- pieces ------------------------------------------------------------------------------------
    def potential(self, x: Tensor) -> Tensor:
        """V_theta(x): (B, *D) -> (B,)."""
        return self.potential_net(x.flatten(1)).squeeze(1)

    def grad_potential(self, x: Tensor, create_graph: bool = False) -> Tensor:
        """grad_x V(x): (B, *D) -> (B, *D), by autograd (kept in the graph for training)."""
        with torch.enable_grad():
            y = x if x.requires_grad else x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.potential(y).sum(), y, create_graph=create_graph)
        return grad

    def flow_matching_loss(self, x0: Tensor) -> Tensor:
        """L_OT of the module docstring on a data batch x0 (B, *D)."""
        x1 = ot_pairs(x0, torch.randn_like(x0))
        t = torch.rand(x0.shape[0], *([1] * (x0.dim() - 1)), device=x0.device, dtype=x0.dtype)
        xt = (1 - t) * x0 + t * x1 + self.config.sigma * torch.randn_like(x0)
        return (self.grad_potential(xt.requires_grad_(True), create_graph=True) - (x1 - x0)).pow(2).flatten(1).sum(1).mean()

    def integrate(self, x: Tensor, steps: int, t_start: float) -> Tensor:
        """The tempered gradient flow of the module docstring from t_start to -langevin_time, ``steps``
        Euler-Maruyama steps. x: (B, *D); returns detached samples."""
        c = self.config

        def field(y: Tensor, t: Tensor) -> tuple[Tensor, float]:
            # The sampler steps dt < 0 and moves by drift * dt: drift = grad V gives x - |dt| grad V.
            return self.grad_potential(y), math.sqrt(2 * temperature(float(t[0]), c.t_star, c.eps_max))

        solve = get_sampler("euler-maruyama", kind="sde").solve
        return solve(field, x, steps, t_start=t_start, t_end=-c.langevin_time, denoise_last=False)

    def negatives(self, x: Tensor) -> Tensor:
        """Phase 2's negatives for a data batch x: half Langevin from data at t=0, half the whole schedule from noise."""
        half = x.shape[0] // 2
        steps = self.config.mcmc_steps
        from_data = self.integrate(x[:half], steps, 0.0) if half else x[:0]
        from_noise = self.integrate(torch.randn_like(x[half:]), steps, 1.0)
        return torch.cat([from_data, from_noise]).detach()

    @property
    def phase(self) -> int:
        return 1 if int(self.steps_done) < self.config.phase1_steps else 2

    # -- what the trainer asks ----------------------------------------------------------------------
    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        x = batch.x
        out = self.flow_matching_loss(x)
        if self.phase == 2 and self.config.cd_weight > 0:
            out = out + self.config.cd_weight * (self.potential(x).mean() - self.potential(self.negatives(x)).mean())
        return out

    def after_step(self, group: str, step: int) -> None:
        """Count trainer steps: the contrastive term joins after ``phase1_steps``."""
        self.steps_done += 1

    # -- the operations -----------------------------------------------------------------------------
    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Noise z (B, *D) at t=1 to data by the tempered gradient flow, ``steps`` steps in all."""
        return self.integrate(z, steps or self.default_steps, 1.0)

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype), steps)

    def logprob(self, x: Tensor) -> Tensor:
        """-V(x) / eps_max, unnormalized; minus the grid's log Z when ``normalize_grid`` > 0."""
        energy = lambda y: self.potential(y) / self.config.eps_max
        out = -energy(x)
        if self.config.normalize_grid:
            out = out - grid_log_partition(energy, self.config.grid_bound, self.config.normalize_grid,
                                           self.device).to(out.dtype)
        return out

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> EnergyMatchingConfig:
        return EnergyMatchingConfig(hidden=32, depth=2, phase1_steps=1, mcmc_steps=4)
