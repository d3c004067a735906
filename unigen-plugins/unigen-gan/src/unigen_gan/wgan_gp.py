"""WGAN with gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs").

Instead of clipping weights, the critic's 1-Lipschitz constraint is enforced softly on points
x_hat = eps x + (1 - eps) x_tilde between a real x and a fake x_tilde, eps ~ U[0, 1] (Algorithm 1,
lines 4-7):

    L_critic = E f(x_tilde) - E f(x) + lambda E_{x_hat} (||grad_{x_hat} f(x_hat)||_2 - 1)^2,   lambda = 10
    L_G      = -E f(G(z))

The critic has no batch normalization (the penalty is per example; layer norm is used instead,
Sec. 4); n_critic = 5; Adam with lr 1e-4, beta1 = 0, beta2 = 0.9 (Algorithm 1's defaults).

Defaults follow the data, as the paper's own experiments do: on images lambda = 10 and Algorithm 1's
optimizer; on vectors the settings of its 2-D toy experiments (``gan_toy.py``: lambda = 0.1, "smaller
lambda seems to help for toy tasks", Adam betas (0.5, 0.9)), with lr 5e-4 decayed linearly to zero (the
decay of its image experiments), and a latent of the data's size (z_dim 2 on 2-D data, as in gan_toy.py).
Measured with these settings on moons: MMD^2 0.005-0.012 after 3,000 steps of batch 256 over seeds 0-3,
against 0.12 for N(0, I); see the class docstring for the command-line run with pure defaults.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from unigen.plugin import nonnegative_float, positive_int

from .base import Adversarial, AdversarialConfig
from .wgan import WGAN


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor | None = None,
                     weight: float = 10.0) -> Tensor:
    """lambda E (||grad f(x_hat)||_2 - 1)^2 with x_hat = eps x + (1 - eps) x_tilde.

    real, fake: (B, *D); eps: (B,) in [0, 1], drawn uniformly when None. Returns a scalar that keeps
    its graph (create_graph=True), so the penalty's gradient reaches the critic's weights.
    """
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    e = eps.view(-1, *([1] * (real.dim() - 1)))  # (B, 1, ..., 1)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)  # (B, *D)
    return weight * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@attrs.frozen(kw_only=True)
class WGANGPConfig(AdversarialConfig):
    n_critic: int = positive_int(5)
    # lambda; None: the paper's value for the data (10 for images, 0.1 for vectors; see the docstring).
    gp_weight: float | None = nonnegative_float(None, optional=True)


class WGANGP(WGAN):
    """WGAN's losses plus the gradient penalty; no weight clipping.

    Defaults by data kind (the paper's own, module docstring): images lambda 10, Adam lr 1e-4, betas
    (0, 0.9); vectors lambda 0.1, Adam lr 5e-4 decayed linearly, betas (0.5, 0.9), z_dim = the data's
    dimension. Checked by hand with pure defaults (MMD^2 of 1,000 samples to 1,000 fresh moons; N(0, I)
    scores 0.12):

        OMP_NUM_THREADS=1 unigen train wgan-gp --data moons --steps 3000 --out RUN    # MMD^2 0.006

    (1.50 with the image settings, 0.019 with the former 32-D latent; the same command with gan: 0.003,
    with wgan: 0.038; tests/test_gan_learns.py runs the wgan-gp one.)
    """

    Config = WGANGPConfig
    data_kinds = ("vector", "image")
    @property
    def trainer_defaults(self) -> dict:  # type: ignore[override]
        """Algorithm 1's optimizer for images; the toy experiments' for vectors (module docstring)."""
        if self.data.is_image:
            return {"lr": 1e-4, "betas": (0.0, 0.9)}
        return {"lr": 5e-4, "betas": (0.5, 0.9), "lr_schedule": "linear"}

    @property
    def gp_weight(self) -> float:
        """lambda: the config's, or the paper's for this kind of data."""
        if self.config.gp_weight is not None:
            return self.config.gp_weight
        return 10.0 if self.data.is_image else 0.1

    def discriminator_norm(self) -> str:
        return "layer"

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        gp = gradient_penalty(self.discriminator, real, fake, weight=self.gp_weight)
        return super().discriminator_loss(real, fake) + gp

    after_step = Adversarial.after_step  # the penalty replaces clipping
