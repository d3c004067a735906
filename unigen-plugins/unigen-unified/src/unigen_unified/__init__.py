"""unigen's unified family: the frameworks in which the other families are special cases.

- ``stochastic-interpolant``: I_t = alpha_t x_0 + beta_t x_1 + gamma_t eps (Albergo, Boffi &
  Vanden-Eijnden 2023); flow matching and the VP diffusion path are two of its schedules.
- ``diffflow``: score matching and an adversarial term mixed by lambda (lambda=1: a score model,
  lambda=0: a GAN).
- ``energy-matching``: one scalar potential V(x) whose gradient flow carries noise to data (trained by
  OT flow matching on -grad V) and whose Boltzmann density exp(-V/eps) holds the data (a contrastive
  term added in a second phase), sampled with a time-dependent temperature (Balcerak et al. 2025).
- ``ebm``: a scalar energy trained contrastively and sampled by Langevin MCMC (Du & Mordatch 2019).
- ``wasserstein-flow`` / ``unbalanced-ot``: a transport map moved by JKO steps on an MMD, balanced or
  with a mass relaxation that discounts outliers.
"""

from .interpolants import Interpolant, get_schedule, register_schedule, schedule_names

__all__ = ["Interpolant", "get_schedule", "register_schedule", "schedule_names"]
