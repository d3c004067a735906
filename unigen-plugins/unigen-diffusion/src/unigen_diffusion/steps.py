"""In-place DDPM and DDIM updates: a step allocates nothing beyond the network's output.

Both are written through the predicted data x0_hat (kept in a preallocated buffer) so that x0 can be
clipped to the data range; without clipping they equal the textbook formulas exactly (tested).

Notation (index 0 = data, see :mod:`unigen_diffusion.schedules`):

=============  ===============================================================
a_n            alpha_bar_n = prod_{k<=n} (1 - beta_k)
x0_hat         (x_n - sqrt(1 - a_n) eps) / sqrt(a_n)            (Ho et al. Eq. 15)
ancestral      x_{n-1} = c0 x0_hat + c1 x_n + sigma_n z,  the posterior mean of q(x_{n-1} | x_n, x0_hat)
               c0 = sqrt(a_{n-1}) beta_n / (1 - a_n), c1 = sqrt(alpha_n) (1 - a_{n-1}) / (1 - a_n)
               (Ho et al. Eq. 7), sigma_n^2 = beta_tilde_n, and no noise at n = 1 (Algorithm 2)
DDIM           x_m = sqrt(a_m) x0_hat + sqrt(1 - a_m - sigma^2) eps + sigma z   (Song et al. 2021a, Eq. 12)
               sigma = eta sqrt((1 - a_m) / (1 - a_n)) sqrt(1 - a_n / a_m)        (Eq. 16)
=============  ===============================================================

The coefficients are Python floats computed in float64 from the schedule (:func:`ancestral_coefs`,
:func:`ddim_coefs`), once per sampling pass.
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor


@attrs.frozen
class StepCoefs:
    inv_sqrt_a: float  # 1 / sqrt(a_n)
    sqrt_1ma: float  # sqrt(1 - a_n)
    c_x0: float  # weight of x0_hat
    c_other: float  # ancestral: weight of x_n; DDIM: weight of eps
    sigma: float  # noise scale


def ancestral_coefs(tables: dict[str, Tensor], n: int) -> StepCoefs:
    a, a_prev = tables["alpha_bar"][n].item(), tables["alpha_bar"][n - 1].item()
    beta, alpha = tables["betas"][n].item(), tables["alphas"][n].item()
    sigma = math.sqrt(tables["posterior_var"][n].item()) if n > 1 else 0.0
    return StepCoefs(1 / math.sqrt(a), math.sqrt(1 - a), math.sqrt(a_prev) * beta / (1 - a),
                     math.sqrt(alpha) * (1 - a_prev) / (1 - a), sigma)


def ddim_sigma(a: float, a_prev: float, eta: float) -> float:
    """Song et al. 2021a, Eq. 16; eta = 1 gives the DDPM posterior standard deviation."""
    return eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))


def ddim_coefs(tables: dict[str, Tensor], n: int, m: int, eta: float) -> StepCoefs:
    a, a_prev = tables["alpha_bar"][n].item(), tables["alpha_bar"][m].item()
    sigma = ddim_sigma(a, a_prev, eta)
    direction = math.sqrt(max(1 - a_prev - sigma**2, 0.0))
    return StepCoefs(1 / math.sqrt(a), math.sqrt(1 - a), math.sqrt(a_prev), direction, sigma)


def _predict_x0_(x: Tensor, eps: Tensor, x0: Tensor, c: StepCoefs, clip: bool) -> None:
    torch.add(x, eps, alpha=-c.sqrt_1ma, out=x0)
    x0.mul_(c.inv_sqrt_a)
    if clip:
        x0.clamp_(-1.0, 1.0)


def ancestral_step_(x: Tensor, eps: Tensor, x0: Tensor, noise: Tensor, c: StepCoefs, clip: bool = False,
                    generator: torch.Generator | None = None) -> Tensor:
    """x_n -> x_{n-1} in place (x is overwritten; x0 and noise are scratch buffers of x's shape)."""
    _predict_x0_(x, eps, x0, c, clip)
    x.mul_(c.c_other).add_(x0, alpha=c.c_x0)
    if c.sigma > 0:
        noise.normal_(generator=generator)
        x.add_(noise, alpha=c.sigma)
    return x


def ddim_step_(x: Tensor, eps: Tensor, x0: Tensor, noise: Tensor, c: StepCoefs, clip: bool = False,
               generator: torch.Generator | None = None) -> Tensor:
    """x_n -> x_m (m < n) in place with DDIM's generalized update. With ``clip``, eps is re-derived from the
    clipped x0_hat, eps = (x_n - sqrt(a_n) x0_hat) / sqrt(1 - a_n), as guided-diffusion's ``ddim_sample``
    does, so the two stay consistent (``eps`` is overwritten)."""
    _predict_x0_(x, eps, x0, c, clip)
    if clip:
        torch.add(x, x0, alpha=-1 / c.inv_sqrt_a, out=eps)
        eps.mul_(1 / c.sqrt_1ma)
    torch.mul(x0, c.c_x0, out=x)
    x.add_(eps, alpha=c.c_other)
    if c.sigma > 0:
        noise.normal_(generator=generator)
        x.add_(noise, alpha=c.sigma)
    return x
