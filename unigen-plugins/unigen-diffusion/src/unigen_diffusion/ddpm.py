"""Denoising diffusion probabilistic models (Ho et al. 2020) and DDIM sampling (Song et al. 2021a).

Forward process over n = 1..T (index 0 = data; the network sees t = n / T, t=0 data, t=1 noise):

    q(x_n | x_0) = N(sqrt(a_n) x_0, (1 - a_n) I),   a_n = alpha_bar_n = prod_{k<=n} (1 - beta_k)   (Eq. 4)

Training: eps-prediction, L_simple = E_{n, x_0, eps} || eps - eps_theta(sqrt(a_n) x_0 + sqrt(1-a_n) eps, n/T) ||^2
(Eq. 14). Sampling: ancestral (Algorithm 2) in T steps, or DDIM (:mod:`.steps`) in any number of
steps with eta (0: deterministic). ``logprob`` is the variational bound (Eq. 5)

    log p(x_0) >= -[ KL(q(x_T|x_0) || N(0, I)) + sum_{n>=2} KL(q(x_{n-1}|x_n,x_0) || p(x_{n-1}|x_n))
                     - log p(x_0 | x_1) ]

with p(x_{n-1}|x_n) = N(mu_theta, beta_tilde_n I), one draw of x_n per term (as Ho et al. evaluate it),
and the discretized Gaussian decoder p(x_0|x_1) (Eq. 13) with variance beta_1, so for images it bounds
log P of the K levels. The bound code is exact (tests/test_diffusion_bound.py): term by term against the
textbook Gaussians, and, with the closed-form optimal denoiser of K data points, it gives their true NLL
log K (K=16 digits: 2.75-2.79 nats vs 2.77).

On coarse data it can still exceed the uniform code. Measured on 8x8 digits (17 levels, uniform 4.09
bits/dim; the learn test's MLP denoiser 256x3, lr 2e-3, EMA weights, 16 test digits): 4.57 bits/dim after 500
steps, 4.27 after 2,000, 4.16 after 6,000. The terms n = 2..10 stay at 1.85-1.90 bits/dim: there the noise
(std 0.015-0.044) is below half a level (0.0625), the only thing left to predict is which level each pixel is
on, and the eps network predicts nothing (eps MSE 0.97-1.02 at n = 1..10; 0.39 at n = 100), while the bound
charges each error 1/(2 beta_tilde_n). L_simple weights these terms like any other (Ho et al. Sec. 3.4: it
down-weights small t; Nichol & Dhariwal 2021 Fig. 2: the first steps dominate the bound): 500 more steps
trained on n <= 10 alone moved them only to 1.80. Rounding x0_hat to the levels wherever 2 std < half a
level (a valid denoiser) gives 3.00-3.11 bits/dim (n = 2..10: 0.68; a time-blind denoiser 3.59, untrained
4.14), still above independent per-pixel categoricals (2.44): the terms n = 11..100 are undertrained and fall
with training (2.01, 1.85, 1.74 bits/dim at 500, 2,000, 6,000 steps). :class:`DDPM` is the base class of the discrete-time family: :class:`DDIM`
changes only its defaults, and latent diffusion (:mod:`.ldm`) only the space it diffuses in.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from unigen import DataInfo
from unigen.plugin import (
    Batch,
    GenerativeModel,
    flag,
    int_at_least,
    nonnegative_float,
    nonnegative_int,
    one_of,
    positive_int,
    positive_ints,
    track_steps,
)

from . import steps as S
from .likelihood import discretized_gaussian_logp, gaussian_logp
from .networks import NETS, denoiser
from .schedules import SCHEDULES, SPACINGS, schedule, timesteps

SAMPLERS = ("ancestral", "ddim")


@attrs.frozen(kw_only=True)
class DDPMConfig:
    timesteps: int = int_at_least(1000, 2)  # T (Ho et al.)
    schedule: str = one_of("linear", tuple(SCHEDULES))  # beta_n: linear (Ho et al.) or cosine (Nichol & Dhariwal)
    net: str = one_of("auto", NETS)  # auto: UNet for images, MLP for vectors
    width: int = positive_int(32)  # UNet base channels
    mults: tuple[int, ...] | None = positive_ints(None, optional=True)  # None: from the resolution (networks.py)
    hidden: int = positive_int(256)  # MLP width
    depth: int = positive_int(3)  # MLP hidden layers
    # ancestral: Algorithm 2 when sampling with T steps, DDIM (with eta) for fewer; ddim: always DDIM.
    sampler: str = one_of("ancestral", SAMPLERS)
    sample_steps: int = nonnegative_int(0)  # 0: T
    eta: float = nonnegative_float(0.0)  # DDIM's eta (Song et al. Eq. 16): 0 deterministic, 1 DDPM's noise
    spacing: str = one_of("trailing", tuple(SPACINGS))  # which of the T steps a shorter DDIM pass visits
    # Clip x0_hat to the data range [-1, 1] inside each step (images only), as Ho et al.'s code does.
    clip_denoised: bool = flag(True)


class DDPM(GenerativeModel):
    family = "diffusion"
    paradigm = "score"
    logprob_kind = "bound"
    logprob_discrete = True  # the discretized decoder L_0: a bound on log P of the K levels
    Config = DDPMConfig
    default_steps = 1000  # T: ancestral sampling; fewer steps use DDIM
    trainer_defaults = {"lr": 1e-3, "ema_decay": 0.995}
    # Buffers: float32 copies of the schedule's tables (schedules.schedule), each (T + 1,), index 0 = data.
    betas: Tensor  # beta_n
    alphas: Tensor  # alpha_n = 1 - beta_n
    alpha_bar: Tensor  # abar_n = prod_{s <= n} alpha_s
    posterior_var: Tensor  # beta_tilde_n, the variance of q(x_{n-1} | x_n, x_0) (Eq. 7)

    def __init__(self, config: DDPMConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.space = self.diffusion_space(config, data)
        self.net = denoiser(self.space, config.net, config.width, config.mults, config.hidden, config.depth)
        self.tables = schedule(config.schedule, config.timesteps)  # float64, for the sampler's coefficients
        for name, table in self.tables.items():  # cast once into float32 buffers for training
            self.register_buffer(name, table.float(), persistent=False)

    # -- overridable pieces (latent diffusion changes the space) -----------------------------------
    def diffusion_space(self, config: Any, data: DataInfo) -> DataInfo:
        """What the diffusion runs on: the data itself here."""
        return data

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, z: Tensor) -> Tensor:
        return z

    @property
    def clip(self) -> bool:
        return self.config.clip_denoised and self.space.is_image

    # -- pieces ---------------------------------------------------------------------------------
    @property
    def T(self) -> int:
        return self.config.timesteps

    def eps(self, x: Tensor, n: Tensor) -> Tensor:
        """eps_theta(x_n, n / T); n: (B,) integer steps."""
        return self.net(x, n.to(x.dtype) / self.T)

    def _at(self, name: str, n: Tensor, x: Tensor) -> Tensor:
        return getattr(self, name)[n].view(-1, *([1] * (x.dim() - 1)))  # (B, 1, ..., 1)

    def q_sample(self, x0: Tensor, n: Tensor, noise: Tensor) -> Tensor:
        """x_n = sqrt(a_n) x_0 + sqrt(1 - a_n) eps (Eq. 4)."""
        a = self._at("alpha_bar", n, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def posterior_mean(self, x0: Tensor, xn: Tensor, n: Tensor) -> Tensor:
        """Mean of q(x_{n-1} | x_n, x_0) (Eq. 7)."""
        a, a_prev = self._at("alpha_bar", n, x0), self._at("alpha_bar", n - 1, x0)
        beta, alpha = self._at("betas", n, x0), self._at("alphas", n, x0)
        return a_prev.sqrt() * beta / (1 - a) * x0 + alpha.sqrt() * (1 - a_prev) / (1 - a) * xn

    def predict_x0(self, xn: Tensor, n: Tensor, eps: Tensor) -> Tensor:
        a = self._at("alpha_bar", n, xn)
        x0 = (xn - (1 - a).sqrt() * eps) / a.sqrt()
        return x0.clamp(-1, 1) if self.clip else x0

    def num_steps(self, steps: int | None) -> int:
        n = steps or self.config.sample_steps or self.T
        return min(n, self.T)

    # -- the five operations --------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """A draw of q(x_n | x_0) at n = round(t T) (t=None: n = T)."""
        z0 = self.encode(x)
        n = torch.full((x.shape[0],), self.T, device=x.device) if t is None else (t * self.T).round().long()
        n = n.clamp(0, self.T)
        return self.q_sample(z0, n, torch.randn_like(z0))

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """L_simple (Ho et al. Eq. 14), averaged over dimensions and the batch."""
        x0 = self.encode(batch.x)
        n = torch.randint(1, self.T + 1, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        return (self.eps(self.q_sample(x0, n, noise), n) - noise).pow(2).mean()

    @torch.no_grad()
    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """From x_T = z to data: ancestral with T steps (sampler=ancestral), else DDIM with eta."""
        k = self.num_steps(steps)
        x = z.clone()
        x0, noise = torch.empty_like(x), torch.empty_like(x)  # scratch buffers reused by every step
        tvec = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
        if self.config.sampler == "ancestral" and k == self.T:
            for n in track_steps(range(self.T, 0, -1), total=self.T):
                c = S.ancestral_coefs(self.tables, n)
                S.ancestral_step_(x, self.eps(x, tvec.fill_(n)), x0, noise, c, self.clip)
        else:
            for n, m in track_steps(timesteps(self.T, k, self.config.spacing), total=k):
                c = S.ddim_coefs(self.tables, n, m, self.config.eta)
                S.ddim_step_(x, self.eps(x, tvec.fill_(n)), x0, noise, c, self.clip)
        return self.decode(x)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        z = torch.randn(num_samples, *self.space.shape, device=self.device, dtype=self.dtype)
        return self.reverse(z, steps)

    @torch.no_grad()
    def logprob(self, x: Tensor) -> Tensor:
        """The variational bound (module docstring), nats per example; one network call per n."""
        x0 = self.encode(x)
        B = x0.shape[0]
        flat = lambda u: u.flatten(1).sum(1)
        a_T = self.alpha_bar[self.T]
        # L_T = KL(N(sqrt(a_T) x0, 1 - a_T) || N(0, 1)) per dimension, summed.
        bound = -0.5 * flat(a_T * x0**2 + (1 - a_T) - 1 - torch.log(1 - a_T))
        for n in range(self.T, 0, -1):
            nn_ = torch.full((B,), n, device=x0.device, dtype=torch.long)
            xn = self.q_sample(x0, nn_, torch.randn_like(x0))
            eps = self.eps(xn, nn_)
            mean = self.posterior_mean(self.predict_x0(xn, nn_, eps), xn, nn_)
            if n > 1:  # KL of two Gaussians with the same variance beta_tilde_n: the mean term only
                bound = bound - flat((self.posterior_mean(x0, xn, nn_) - mean) ** 2) / (2 * self.posterior_var[n])
            else:  # L_0: the decoder p(x_0 | x_1) = N(mu_theta(x_1, 1), beta_1), discretized for images
                std = self.betas[1].sqrt()
                levels = self.data.levels if self.space is self.data else None
                bound = bound + (discretized_gaussian_logp(x0, mean, std, levels) if levels
                                 else gaussian_logp(x0, mean, std))
        return bound

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> DDPMConfig:
        return cls.Config(timesteps=20, width=8, mults=(1, 2), hidden=32, depth=2)


@attrs.frozen(kw_only=True)
class DDIMConfig(DDPMConfig):
    # Song et al. 2021a: 50 deterministic steps already give most of the quality of 1000 ancestral ones.
    sampler: str = one_of("ddim", SAMPLERS)
    sample_steps: int = nonnegative_int(50)


class DDIM(DDPM):
    """The DDPM network and objective, sampled by default with 50 deterministic DDIM steps."""

    Config = DDIMConfig
    default_steps = 50
