"""DiffFlow as implemented here: one network trained by a mixture of denoising score matching and a
GAN loss on a few-step generator unrolled from it.

What this module is, precisely. Zhang et al. 2023 ("DiffFlow: A Unified SDE Framework for Score-Based
Diffusion Models and Generative Adversarial Networks") describe score-based diffusion and GANs as two
limits of one particle SDE whose drift mixes the (noised) data score and the discriminator's
log-density-ratio gradient with time-dependent weights; this module does NOT simulate that SDE. It trains
the mixture of the two limits' *objectives*, as the reference text sketches it (the DSM + GAN mixture of
Kim et al. 2023, "Consistency Trajectory Models", Sec. 4, is the closest published recipe):

    L_G = lambda * DSM(v_theta) + (1 - lambda) * GAN(G_theta),   G_theta = ``gen_steps`` (4) DDIM steps of v_theta,

with the discriminator D_psi trained on G_theta's samples. lambda = 1 is a score model (sampled by the
probability-flow ODE), lambda = 0 a GAN whose generator is the unrolled 4-step sampler, and in between
the adversarial term corrects the error of the few-step sampler the score term defines.

A network v_theta(x, t) of the VP diffusion (Song et al. 2021; t=0 data, t=1 noise)

    x_t = a_t x_0 + s_t eps,  a_t = exp(-B(t)/2),  s_t = sqrt(1 - e^{-B(t)}),  B(t) = b_min t + (b_max - b_min) t^2/2,

predicts v = a_t eps - s_t x_0 (Salimans & Ho 2022); since a_t^2 + s_t^2 = 1,
x0_hat = a_t x_t - s_t v_theta and eps_hat = s_t x_t + a_t v_theta, both bounded at both ends of [t_min, 1]
(an eps-prediction would be amplified 1/a_1 = 150-fold into x0_hat at t=1, an x0-prediction 1/s^2 into
the score near t=0). The score is grad log p_t(x) = -eps_hat / s_t. The generator G_theta(z) is the
deterministic probability-flow sampler unrolled for ``gen_steps`` DDIM steps from z ~ N(0, I) at t=1 to
t_min (Song, Meng & Ermon 2021, Eq. 12 with eta = 0: x_s = a_s x0_hat + s_s eps_hat), differentiable in
theta. A discriminator D_psi (logits) is the second parameter group.

    L_D(psi)   = E_x softplus(-D(x)) + E_z softplus(D(G(z)))                    (G(z) a constant)
    L_G(theta) = lambda E ||v_theta(x_t, t) - v||^2 + (1 - lambda) E_z softplus(-D(G_theta(z)))

The first term of L_G is denoising score matching (Vincent 2011): the score error is
(a_t / s_t)(v_theta - v), so it is DSM with the positive weight s_t^2 / a_t^2, whose minimiser is the true
score. The second is the non-saturating GAN loss (Goodfellow et al. 2014).

- lambda = 1 is pure score matching: the discriminator is never stepped (``active_groups``), L_G is the
  DSM loss alone, and sampling integrates the probability-flow ODE with the core's ``heun``
  (``sampler=auto``; ``sampler=euler-maruyama`` runs the reverse SDE instead).
- lambda = 0 is a GAN whose generator is the unrolled sampler network; no score term is trained, and
  samples are G(z).
- In between, the score term anchors G to the diffusion's probability flow and the adversarial term
  corrects the error of its few steps; samples are G(z).

The unrolled generator is written out here because the registered samplers run without gradients.
Sampling keeps the unroll the generator was trained with: ``sample(n, steps)`` and ``unigen sample
--steps`` do not change it (a warning says so), because the adversarial term trained G for exactly
``gen_steps`` steps and another step count is another, untrained generator. A user who wants that
anyway sets ``sample_unroll`` (``--set sample_unroll=8``) knowingly.
``sampler`` can name any registered solver instead (ODE: the probability flow dx/dt = f - g^2 s / 2;
SDE: the reverse SDE dx = (f - g^2 s) dt + g dW, f = -B'(t) x / 2, g = sqrt(B'(t))).
"""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import (
    Batch,
    GenerativeModel,
    broadcast_t,
    get_sampler,
    nonnegative_int,
    positive_int,
    probability,
    sampler,
)

from .networks import TimeField, vector_mlp

B_MIN, B_MAX, T_MIN = 0.1, 20.0, 1e-3


def vp_coefficients(t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(a_t, s_t, B'(t)) of the VP SDE, computed in float64 and cast to t's dtype. t: (B,)."""
    td = t.double()
    big_b = B_MIN * td + 0.5 * (B_MAX - B_MIN) * td * td
    a, s, db = torch.exp(-big_b / 2), torch.sqrt(-torch.expm1(-big_b)), B_MIN + (B_MAX - B_MIN) * td
    return a.to(t.dtype), s.to(t.dtype), db.to(t.dtype)


@attrs.frozen(kw_only=True)
class DiffFlowConfig:
    # lambda: weight of score matching; 1 - lambda weights the adversarial term.
    lam: float = probability(0.5)
    hidden: int = positive_int(128)  # width of the denoiser MLP (vectors) behind G's DDIM steps
    depth: int = positive_int(3)  # hidden layers of the denoiser MLP
    disc_hidden: int = positive_int(128)  # width of the discriminator's two hidden layers
    # DDIM steps of the unrolled generator G (few: the adversarial term backpropagates through all).
    gen_steps: int = positive_int(4)
    n_critic: int = positive_int(1)  # discriminator steps per generator step (when lambda < 1)
    # DDIM steps of G at sampling; 0 = ``gen_steps``, the unroll it was trained with (see the docstring).
    sample_unroll: int = nonnegative_int(0)
    # "auto": G(z) when lambda < 1, the probability-flow ODE (heun) when lambda = 1; or a registered sampler.
    sampler: str = sampler("auto", also=("auto",))


class DiffFlow(GenerativeModel):
    family = "unified"
    paradigm = "score"
    logprob_kind = "none"
    no_logprob_reason = "DiffFlow's generator is implicit once the adversarial term moves it off the score model"
    Config = DiffFlowConfig
    default_steps = 50  # solver steps when a registered sampler is used
    data_kinds = ("vector",)
    trainer_defaults = {"lr": 1e-3, "betas": (0.5, 0.999)}

    def __init__(self, config: DiffFlowConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.denoiser = TimeField(data, heads=1, hidden=config.hidden, depth=config.depth)
        self.discriminator = vector_mlp(data.dim, 1, config.disc_hidden, 2)

    # -- pieces ------------------------------------------------------------------------------------
    def predict(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) at (x, t) from the v-prediction; each (B, *D)."""
        a, s, _ = (broadcast_t(c, x) for c in vp_coefficients(t))
        vel = self.denoiser(x, t)[:, 0]
        return a * x - s * vel, s * x + a * vel

    def critic(self, x: Tensor) -> Tensor:
        """D_psi(x) logits: (B,)."""
        return self.discriminator(x.flatten(1)).squeeze(1)

    def score_matching_loss(self, x0: Tensor) -> Tensor:
        """E_{t, eps} ||v_theta(a_t x_0 + s_t eps, t) - (a_t eps - s_t x_0)||^2, t ~ U[t_min, 1]."""
        t = T_MIN + (1 - T_MIN) * torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype)
        a, s, _ = (broadcast_t(c, x0) for c in vp_coefficients(t))
        noise = torch.randn_like(x0)
        return (self.denoiser(a * x0 + s * noise, t)[:, 0] - (a * noise - s * x0)).pow(2).mean()

    def generate(self, z: Tensor, steps: int | None = None) -> Tensor:
        """G_theta(z): ``steps`` (default ``gen_steps``) deterministic DDIM steps from t=1 to t_min, with
        gradients. z: (B, *D) -> (B, *D)."""
        steps = steps or self.config.gen_steps
        grid = torch.linspace(1.0, T_MIN, steps + 1, device=z.device, dtype=z.dtype)
        x = z
        for t, s in zip(grid[:-1], grid[1:]):
            tb = t.expand(x.shape[0])
            a_s, s_s, _ = (broadcast_t(c, x) for c in vp_coefficients(s.expand(x.shape[0])))
            x0_hat, eps_hat = self.predict(x, tb)
            x = a_s * x0_hat + s_s * eps_hat
        return x

    def generator_loss(self, x: Tensor) -> Tensor:
        lam = self.config.lam
        out = torch.zeros((), device=x.device, dtype=x.dtype)
        if lam > 0:
            out = out + lam * self.score_matching_loss(x)
        if lam < 1:
            fake = self.generate(torch.randn_like(x))
            out = out + (1 - lam) * F.softplus(-self.critic(fake)).mean()
        return out

    def discriminator_loss(self, x: Tensor) -> Tensor:
        with torch.no_grad():  # the fakes are constants of L_D
            fake = self.generate(torch.randn_like(x))
        return F.softplus(-self.critic(x)).mean() + F.softplus(self.critic(fake)).mean()

    # -- what the trainer asks ----------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": list(self.discriminator.parameters()), "generator": list(self.denoiser.parameters())}

    def active_groups(self, step: int) -> tuple[str, ...]:
        """lambda = 1: only the score model; else n_critic discriminator steps per generator step."""
        if self.config.lam == 1:
            return ("generator",)
        if (step + 1) % self.config.n_critic == 0:
            return ("discriminator", "generator")
        return ("discriminator",)

    def loss(self, batch: Batch, group: str | None = None) -> Tensor | dict[str, Tensor]:
        losses = {"discriminator": self.discriminator_loss, "generator": self.generator_loss}
        if group is None:
            return {g: losses[g](batch.x) for g in self.parameter_groups()}
        if group not in losses:
            raise ValueError(f"{self.model_id} has no parameter group {group!r}; known: discriminator, generator")
        return losses[group](batch.x)

    # -- the operations -----------------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """A draw of x_t given x_0 = x from the VP forward process (t=1 when None)."""
        if t is None:
            t = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
        a, s, _ = (broadcast_t(c, x) for c in vp_coefficients(t.to(x.dtype)))
        return a * x + s * torch.randn_like(x)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """grad log p_t(x) = -eps_hat(x, t) / s_t."""
        _, s, _ = (broadcast_t(c, x) for c in vp_coefficients(t))
        return -self.predict(x, t)[1] / s

    def _probability_flow(self, x: Tensor, t: Tensor) -> Tensor:
        _, _, db = (broadcast_t(c, x) for c in vp_coefficients(t))
        return -0.5 * db * x - 0.5 * db * self.score(x, t)

    def _reverse_sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        _, _, db = (broadcast_t(c, x) for c in vp_coefficients(t))
        return -0.5 * db * x - db * self.score(x, t), db.sqrt()

    @property
    def unroll(self) -> int:
        """DDIM steps of G at sampling: ``sample_unroll``, or the trained ``gen_steps`` when it is 0."""
        return self.config.sample_unroll or self.config.gen_steps

    def sampler_name(self) -> str:
        if self.config.sampler != "auto":
            return self.config.sampler
        return "heun" if self.config.lam == 1 else "generator"

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """z ~ N(0, I) at t=1 to data: G(z), or a registered solver (see the module docstring)."""
        name = self.sampler_name()
        if name == "generator":
            if steps is not None and steps != self.unroll:
                warnings.warn(f"{self.model_id}: steps={steps} ignored; G(z) keeps the {self.unroll}-step unroll it was "
                              "trained with (set sample_unroll to change it knowingly)", stacklevel=2)
            return self.generate(z, self.unroll)
        spec = get_sampler(name, host=self.host)
        fn = self._reverse_sde if spec.kind == "sde" else self._probability_flow
        return spec.solve(fn, z, steps or self.default_steps, t_start=1.0, t_end=T_MIN)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype), steps)

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> DiffFlowConfig:
        return DiffFlowConfig(hidden=32, depth=2, disc_hidden=32, gen_steps=2)
