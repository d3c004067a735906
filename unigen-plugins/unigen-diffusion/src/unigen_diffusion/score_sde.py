"""Score-based generative modelling through SDEs (Song et al. 2021b), VP and VE (:mod:`.sde`).

The network predicts the noise, s_theta(x, t) = -eps_theta(c_in(t) x, t) / std(t), with the input
scaled by c_in = 1 / sqrt(m(t)^2 + std(t)^2) (unit-variance data at every t). Denoising score matching
with lambda(t) = std(t)^2 (Song et al. 2021b, Eq. 7 and Sec. 3.3):

    E_t E_{x_0, eps} lambda(t) || s_theta(x_t, t) + eps / std(t) ||^2 = E || eps_theta - eps ||^2,
    t ~ U(t_min, 1),  x_t = m(t) x_0 + std(t) eps.

For VE this is also the likelihood weighting lambda = g(t)^2 = 2 log(sigma_max / sigma_min) sigma(t)^2 (Song,
Durkan et al. 2021), up to a constant and the sigma_min^2 in std(t)^2; for VP they differ (beta(t) vs std(t)^2).

Sampling, from x(1) ~ N(0, std(1)^2 I) to t_min, with a sampler of the core registry (``sampler``):
an SDE solver integrates the reverse SDE  dx = [f(x,t) - g(t)^2 s(x,t)] dt + g(t) dW  (Eq. 6), with
``corrector_steps`` > 0 adding Langevin corrector steps at signal-to-noise ``snr`` before each
predictor step (predictor-corrector, Algorithms 4-5, in the order of Song et al.'s code); an ODE solver integrates the probability-flow
ODE  dx/dt = f(x,t) - 1/2 g(t)^2 s(x,t)  (Eq. 13). The last point is denoised with Tweedie's formula.

``logprob`` solves the probability-flow ODE from the data at t_min to t=1 with the instantaneous change
of variables (Sec. D.2):  log p(x) = log N(x(1); 0, std(1)^2 I) + int_{t_min}^1 div v(x(t), t) dt,
with adaptive dopri5 (the core sampler). The divergence is exact (D backward passes) for D <= 16 or
``trace="exact"``; otherwise Hutchinson's estimator with one Rademacher probe per solve (FFJORD), and
the model labels its logprob an "estimate". A density on the data space: images are evaluated on
dequantized data by the NLL metric.

Samples come from an EMA of the weights (decay 0.999, Song et al.'s; ``trainer_defaults``). On 2-D moons
(MLP 128x3, lr 2e-3, batch 128) the EMA weights beat a fitted 4-component Gaussian mixture (MMD^2 0.030):
VE (sigma_max 5, about the data's largest pairwise distance, 3.9: Song & Ermon 2020's Technique 1) 0.015-0.018
after 1,500 steps with 200 Euler-Maruyama steps; VP 0.018-0.020 after 3,000 with 100 Heun steps of the ODE.
Without the EMA, 800 steps gave 0.041 and 0.060; sampling with the exact score showed the error to be the
network's, at mid noise (sigma 0.12-0.8), and VP's raw weights stayed at 0.07 up to 3,200 steps. VP needs
more steps than VE there: beta_max 20 spends about half of t ~ U(t_min, 1) on marginals that are nearly the
prior for 2-D data. With pure defaults (``unigen train score-sde --data moons --steps 3000``: VP, MLP 256x3,
lr 1e-3, 500 Euler-Maruyama steps) the EMA weights score 0.017 (``sde=ve``, sigma_max 10: 0.004), the raw
weights 0.027 (0.025); after the default 1,000 steps 0.069.
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
    broadcast_t,
    get_sampler,
    nonnegative_int,
    one_of,
    open_unit,
    positive_float,
    positive_int,
    positive_ints,
    sampler,
)

from .networks import NETS, denoiser
from .sde import VESDE, VPSDE

AUTO_EXACT_DIM = 16
TRACES = ("auto", "exact", "hutchinson")
SNR = {"ve": 0.16, "vp": 0.01}  # Song et al.'s Langevin signal-to-noise ratios (Sec. 4.2, App. G)


@attrs.frozen(kw_only=True)
class ScoreSDEConfig:
    sde: str = one_of("vp", ("vp", "ve"))  # variance preserving (DDPM's limit) or exploding (NCSN's)
    beta_min: float = positive_float(0.1)  # VP: beta(t) = beta_min + t (beta_max - beta_min), Song et al.'s
    beta_max: float = positive_float(20.0)  # VP: beta(1), Song et al.'s
    # VE: sigma(t) = sigma_min (sigma_max / sigma_min)^t; sigma_max about the largest distance between data
    # points (Song & Ermon 2020, Technique 1).
    sigma_min: float = positive_float(0.01)
    sigma_max: float = positive_float(10.0)  # VE: sigma(1), the std of the prior N(0, sigma_max^2 I)
    t_min: float = open_unit(1e-3)  # epsilon: training draws t ~ U(t_min, 1); sampling and logprob stop there
    net: str = one_of("auto", NETS)  # auto: UNet for images, MLP for vectors
    width: int = positive_int(32)  # UNet base channels
    mults: tuple[int, ...] | None = positive_ints(None, optional=True)  # None: from the resolution (networks.py)
    hidden: int = positive_int(256)  # MLP width
    depth: int = positive_int(3)  # MLP hidden layers
    # An SDE sampler: the reverse SDE; an ODE sampler (euler, heun, rk4, dopri5): the probability-flow ODE.
    sampler: str = sampler("euler-maruyama")
    sample_steps: int = positive_int(500)  # predictor steps from t=1 to t_min (ignored by adaptive solvers)
    corrector_steps: int = nonnegative_int(0)  # Langevin corrector steps before each predictor step (PC sampling)
    # The corrector's signal-to-noise ratio r; None: Song et al.'s 0.16 for VE, 0.01 for VP.
    snr: float | None = positive_float(None, optional=True)
    # logprob's divergence: exact (D backward passes), hutchinson (one probe), auto: exact up to 16 dims.
    trace: str = one_of("auto", TRACES)
    rtol: float = positive_float(1e-5)  # relative tolerance of adaptive ODE solvers (dopri5), logprob's too
    atol: float = positive_float(1e-5)  # absolute tolerance of adaptive ODE solvers (dopri5), logprob's too

    @sigma_max.validator
    def _sigmas(self, attribute: Any, value: float) -> None:
        if value <= self.sigma_min:
            raise ValueError(f"'sigma_max' ({value}) must exceed 'sigma_min' ({self.sigma_min})")

    @beta_max.validator
    def _betas(self, attribute: Any, value: float) -> None:
        if value < self.beta_min:
            raise ValueError(f"'beta_max' ({value}) must be at least 'beta_min' ({self.beta_min})")


class ScoreSDE(GenerativeModel):
    family = "diffusion"
    paradigm = "score"
    # The PF-ODE's change of variables: exact to solver tolerance with the exact trace, an unbiased estimate
    # with Hutchinson's (trace="hutchinson", or "auto" above AUTO_EXACT_DIM: every image).
    logprob_kind = "exact"
    logprob_variants = {"exact": {"trace": "exact"}, "estimate": {"trace": "hutchinson"}}
    Config = ScoreSDEConfig
    data_kinds = ("vector", "image")  # 2-D toys first: the exact-trace likelihood is cheap there
    default_steps = 500
    trainer_defaults = {"lr": 1e-3, "ema_decay": 0.999}  # Song et al. sample from an EMA of the weights (0.999)

    def __init__(self, config: ScoreSDEConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.sde = VPSDE(config.beta_min, config.beta_max) if config.sde == "vp" else VESDE(config.sigma_min, config.sigma_max)
        self.net = denoiser(data, config.net, config.width, config.mults, config.hidden, config.depth)
        if self._trace() == "hutchinson":
            self.logprob_kind = "estimate"

    def _trace(self) -> str:
        if self.config.trace != "auto":
            return self.config.trace
        return "exact" if self.data.dim <= AUTO_EXACT_DIM else "hutchinson"

    # -- the score and the two reverse-time dynamics --------------------------------------------
    def _coefs(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        m, std = self.sde.marginal(t)
        return broadcast_t(m.to(x.dtype), x), broadcast_t(std.to(x.dtype), x)

    def eps(self, x: Tensor, t: Tensor) -> Tensor:
        m, std = self._coefs(t, x)
        return self.net(x * torch.rsqrt(m**2 + std**2), t)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return -self.eps(x, t) / self._coefs(t, x)[1]

    def _fg(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        f = broadcast_t(self.sde.drift_coef(t).to(x.dtype), x) * x
        return f, broadcast_t(self.sde.diffusion(t).to(x.dtype), x)

    def reverse_sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        f, g = self._fg(x, t)
        return f - g**2 * self.score(x, t), g

    def pf_ode(self, x: Tensor, t: Tensor) -> Tensor:
        f, g = self._fg(x, t)
        return f - 0.5 * g**2 * self.score(x, t)

    @property
    def snr(self) -> float:
        return self.config.snr if self.config.snr is not None else SNR[self.config.sde]

    def corrector_(self, x: Tensor, t: Tensor, steps: int) -> Tensor:
        """Langevin steps x += e s + sqrt(2e) z, e = 2 alpha (snr mean|z| / mean|s|)^2 (Algorithms 4-5), the
        norms averaged over the batch as Song et al.'s code does (per example, |s| of a 2-D point can be near
        0 between the modes and the step explode); alpha = 1 - beta(t) / steps for VP, 1 for VE."""
        alpha = float(self.sde.langevin_alpha(t[:1], steps))
        for _ in range(self.config.corrector_steps):
            s = self.score(x, t)
            z = torch.randn_like(x)
            e = 2 * alpha * (self.snr * z.flatten(1).norm(dim=1).mean() / s.flatten(1).norm(dim=1).mean().clamp_min(1e-12)) ** 2
            x.add_(e * s + (2 * e).sqrt() * z)
        return x

    # -- the five operations --------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """A draw of x_t | x_0 (t=None: t=1)."""
        t = torch.ones(x.shape[0], device=x.device, dtype=x.dtype) if t is None else t
        m, std = self._coefs(t, x)
        return m * x + std * torch.randn_like(x)

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        x0 = batch.x
        t = self.config.t_min + (1 - self.config.t_min) * torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype)
        m, std = self._coefs(t, x0)
        noise = torch.randn_like(x0)
        return (self.eps(m * x0 + std * noise, t) - noise).pow(2).mean()

    @torch.no_grad()
    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """From z ~ N(0, std(1)^2 I) at t=1 to t_min, then Tweedie's denoising step."""
        k, t_min = steps or self.config.sample_steps, self.config.t_min
        spec = get_sampler(self.config.sampler, host=self.host)
        if spec.kind == "ode":
            x = spec.solve(self.pf_ode, z, k, t_start=1.0, t_end=t_min, rtol=self.config.rtol, atol=self.config.atol)
        elif self.config.corrector_steps == 0:
            x = spec.solve(self.reverse_sde, z, k, t_start=1.0, t_end=t_min)
        else:  # at each t_i the corrector, then the predictor (one registered SDE step) to t_{i+1} (pc_sampler)
            grid = torch.linspace(1.0, t_min, k + 1, dtype=torch.float64).tolist()
            x = z.clone()
            for i, (a, b) in enumerate(zip(grid[:-1], grid[1:])):
                self.corrector_(x, torch.full((x.shape[0],), a, device=x.device, dtype=x.dtype), k)
                x = spec.solve(self.reverse_sde, x, 1, t_start=a, t_end=b, denoise_last=i == k - 1)
        t = torch.full((x.shape[0],), t_min, device=x.device, dtype=x.dtype)
        m, std = self._coefs(t, x)
        x = (x - std * self.eps(x, t)) / m  # E[x_0 | x_{t_min}] (Tweedie)
        return x.clamp(-1, 1) if self.data.is_image else x

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        std1 = float(self.sde.marginal(torch.ones(()))[1])  # the prior N(0, std(1)^2 I)
        return self.reverse(torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype) * std1, steps)

    def logprob(self, x: Tensor) -> Tensor:
        """log p(x) by the probability-flow ODE (module docstring), nats per example."""
        B, D = x.shape[0], self.data.dim
        exact = self._trace() == "exact"
        probe = torch.randint(0, 2, (B, D), device=x.device, dtype=x.dtype) * 2 - 1  # Rademacher

        def augmented(state: Tensor, t: Tensor) -> Tensor:
            with torch.enable_grad():
                y = state[:, :D].detach().requires_grad_(True)
                v_ = self.pf_ode(y.view(B, *self.data.shape), t).flatten(1)  # (B, D)
                if exact:
                    div = torch.stack([torch.autograd.grad(v_[:, i].sum(), y, retain_graph=True)[0][:, i]
                                       for i in range(D)]).sum(0)  # (D, B) -> (B,)
                else:
                    div = (torch.autograd.grad((v_ * probe).sum(), y)[0] * probe).sum(1)
            return torch.cat([v_.detach(), div.detach()[:, None]], 1)

        state = torch.cat([x.flatten(1), torch.zeros(B, 1, device=x.device, dtype=x.dtype)], 1)
        solve = get_sampler("dopri5", kind="ode", host=self.host).solve
        end = solve(augmented, state, None, t_start=self.config.t_min, t_end=1.0,
                    rtol=self.config.rtol, atol=self.config.atol)
        z, delta = end[:, :D], end[:, D]
        std1 = float(self.sde.marginal(torch.ones(()))[1])
        log_prior = (-0.5 * (z / std1) ** 2 - math.log(std1) - 0.5 * math.log(2 * math.pi)).sum(1)
        return log_prior + delta

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> ScoreSDEConfig:
        return cls.Config(width=8, hidden=32, depth=2, sample_steps=10, rtol=1e-3, atol=1e-3)
