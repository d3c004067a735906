"""Consistency distillation (Song et al. 2023, Algorithm 2) of a trained ``ddpm`` run.

The teacher's DDPM is read in the variance-exploding form: x_n = sqrt(a_n) y with y = x_0 + sigma_n eps and
sigma_n = sqrt((1 - a_n) / a_n), so its probability-flow ODE is dy/dsigma = eps_theta(y / sqrt(1 + sigma^2), n/T)
and one DDIM step is one Euler step of it. A consistency function f_theta(y, sigma) maps every point of an
ODE trajectory to its origin, with the boundary parametrization (Sec. 3, App. C)

    f_theta(y, sigma) = c_skip(sigma) y + c_out(sigma) F_theta(y, sigma),
    c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
    c_out = (sigma - sigma_min) sigma_data / sqrt(sigma_data^2 + sigma^2),

so f_theta(y, sigma_min) = y exactly. F_theta(y, sigma) = net(y / sqrt(1 + sigma^2), n/T) is an O(1) output
(the paper's choice; an eps-form F would multiply the network's error by sigma_max ~ 150 at the first step),
read at the teacher's input scaling.

How the student starts (``init``). The paper starts F from the teacher's EDM network, which has F's meaning.
This teacher predicts eps, so three starts are offered (measured, and why, in :class:`Consistency`'s docstring):

- ``copy`` (default): F is a trainable copy of the teacher's eps network: its features, but at the start f
  is not an x0 estimate (at large sigma f ~ sigma_data eps_teacher(y), a Gaussian of the data's scale);
- ``teacher``: the parametrization of Latent Consistency Models (Luo et al. 2023; diffusers' LCM
  distillation script): F is the same trainable copy read as an eps prediction, f = x0_F = y - sigma F by the
  teacher's own conversion (clipped to [-1, 1] where the teacher's sampler clips: images), and f = y at
  sigma_min (LCM's c_skip, c_out with their timestep scaling taken to its limit). At the start f is exactly
  the teacher's x0 prediction at every grid point, and every layer trains;
- ``random``: a freshly initialised F.

Loss weight (``weighting``): ``ict`` (default) lambda_i = 1 / (sigma_{i+1} - sigma_i) of improved consistency
training (Song & Dhariwal 2023), normalised to mean 1 over the grid so the loss keeps its scale; ``uniform``
lambda = 1 (Song et al. 2023's CD). It helps every warm start (table).

Training: on the teacher grid sigma_1 < ... < sigma_N (N = ``num_scales`` DDPM steps spaced as Karras et al.'s
rho = 7 grid), draw i, y_{i+1} = x_0 + sigma_{i+1} z, take one teacher ODE step (Heun, or Euler = DDIM) to
y_hat_i, and minimise lambda_i || f_theta(y_{i+1}, sigma_{i+1}) - f_theta-(y_hat_i, sigma_i) ||^2 / d (d: the
dimension) with the target network theta- <- mu theta- + (1 - mu) theta after each step (``after_step``).
Sampling (Algorithm 1): x = f(sigma_N z, sigma_N) in one step; with k steps, re-noise to
sigma = sqrt(tau^2 - sigma_min^2) on evenly spaced grid points and apply f again.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from unigen import DataInfo, UnigenError, load_run
from unigen.plugin import (
    Batch,
    GenerativeModel,
    fraction,
    int_at_least,
    one_of,
    positive_float,
    positive_int,
    text_field,
)

from .ddpm import DDPM

# lambda(sigma_i, sigma_{i+1}) of the distillation loss, from the (N-1,) grid steps d_i = sigma_{i+1} - sigma_i
WEIGHTINGS = {"ict": lambda d: 1 / d, "uniform": torch.ones_like}


@attrs.frozen(kw_only=True)
class ConsistencyConfig:
    teacher: str = text_field("")  # a trained ddpm/ddim run directory
    num_scales: int = int_at_least(18, 2)  # N (paper: 18 for CD)
    target_decay: float = fraction(0.95)  # mu: the target network's EMA decay per step
    sigma_data: float = positive_float(0.5)  # sigma_data in c_skip, c_out (the data's standard deviation)
    rho: float = positive_float(7.0)  # spacing of the sigma grid (Karras et al. 2022)
    teacher_solver: str = one_of("heun", ("heun", "euler"))  # the teacher's ODE step between grid points
    sample_steps: int = positive_int(1)  # applications of f when sampling (Algorithm 1)
    # How the student starts (measured in the class docstring): "copy": F is a copy of the teacher's eps
    # network; "teacher": that copy read as an x0 prediction (LCM), so f is exactly the teacher's x0
    # prediction at the start; "random": a fresh network.
    init: str = one_of("copy", ("copy", "teacher", "random"))
    # Loss weight of grid interval i: "ict" 1 / (sigma_{i+1} - sigma_i) (Song & Dhariwal 2023), "uniform" 1
    # (Song et al. 2023); normalised to mean 1 over the grid.
    weighting: str = one_of("ict", tuple(WEIGHTINGS))


class Consistency(GenerativeModel):
    """Consistency distillation of a ddpm run (module docstring: the parametrization and the starts).

    1-step MMD^2 after 300 distillation steps, mean of 2 seeds (moons: to 1000 fresh points, batch 128,
    lr 2e-4; digits: to 300 test digits, RBF scales 2, 4, 8, batch 64, lr 5e-4; MLP teachers, the benchmark's):

        start (init)          moons ict  moons uniform  digits ict  digits uniform  untrained (moons, digits)
        copy (default)          0.067        0.078         0.164        0.226          0.634, 0.777
        teacher (x0, LCM)       0.180        0.239         0.232        0.252          1.060, 0.639
        random                  0.310        0.677         0.851        0.738          3.499, 2.221
        teacher's DDIM, 1 / 200 steps: moons 1.057 / 0.037, digits 0.642 / 0.084; N(0, I): 0.117, 0.571

    (``OMP_NUM_THREADS=1 python benchmarks/consistency_warm_start.py --seeds 2 --why``.) At this budget both
    warm starts beat a random start, and the start with x0 meaning does not beat the copied eps network,
    which stays the default. The head start is one of budget: after 1,500 steps (``--cd-steps 1500 --seeds 1``,
    ict / uniform) copy scores 0.051 / 0.051 on moons and 0.140 / 0.176 on digits, random 0.050 / 0.079 and
    0.137 / 0.137, teacher 0.103 / 0.144 and 0.240 / 0.279: a random start catches up with the copy, and the
    x0 start falls behind both.

    Why the x0 start loses (``--why``): a 1-step sample is f at sigma_max = 157, where CD's target is the
    teacher's ODE endpoint. An eps teacher's x0 there is y - sigma eps_theta: the network's error times 157.
    Its MSE to the clean x0 at sigma = 0.82 / 7.6 / 41 / 157 is 0.35 / 0.98 / 3.4 / 68.6 on moons and
    0.13 / 1.05 / 1.59 / 1.68 on digits (clipped), where predicting the data mean scores 0.98 and 0.29. At
    sigma_max the untrained f is 44.1 (moons) and 1.11 (digits) in MSE from the teacher's 200-step ODE
    endpoint for ``teacher``, 0.40 and 0.48 for ``copy`` (sigma_data eps_teacher is a spread of the data's
    scale), 1.10 and 0.55 for ``random``. The x0 start has the most to unlearn at the noisy end, and there
    every correction is read through the factor sigma (F must place f to a precision of 1/sigma). Tried and
    not better (300 steps, 2 seeds, moons / digits): the earlier form of ``teacher``, a frozen teacher inside
    f plus a zero-initialised residual (f = x0_teacher + c_out net): 0.248 / 0.540 uniform, 0.906 / 0.313
    ict, digits clipped (the LCM form: 0.239 / 0.252, 0.180 / 0.232); for the LCM form without the clip (digits 0.553,
    uniform): pseudo-Huber loss (iCT's c = 0.00054 sqrt(d)) 0.335 / 0.580, lr 1e-3 0.302 / 0.583, and with
    ict the target decay 0 of iCT 0.50 / 0.59.
    """

    family = "diffusion"
    paradigm = "score"
    logprob_kind = "none"
    no_logprob_reason = "a consistency model maps noise to data without a tractable density"
    Config = ConsistencyConfig
    default_steps = 1
    needs_runs = {"teacher": "ddpm"}
    data_kinds = ("image", "vector")
    trainer_defaults = {"lr": 2e-4}
    # Buffers: the distillation grid, ascending, N points (N - 1 intervals for grid_weight).
    grid_n: Tensor  # (N,) the DDPM step of each grid point
    grid_sigma: Tensor  # (N,) sigma_n at those steps
    grid_weight: Tensor  # (N - 1,) lambda_i of interval (sigma_i, sigma_{i+1}), mean 1

    def __init__(self, config: ConsistencyConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        if not config.teacher:
            raise UnigenError("consistency needs a trained ddpm run: --set teacher=RUN_DIR")
        teacher = load_run(config.teacher).model
        if not isinstance(teacher, DDPM) or teacher.space is not teacher.data:
            raise UnigenError(f"teacher {config.teacher} is a {teacher.model_id!r} run; consistency distils a ddpm run")
        if tuple(teacher.data.shape) != tuple(data.shape):
            raise UnigenError(f"teacher {config.teacher} was trained on shape {teacher.data.shape}, not {data.shape}")
        self.teacher = teacher.requires_grad_(False).eval()  # frozen: not in parameter_groups
        self.phi = copy.deepcopy(teacher.net).requires_grad_(True)  # the teacher's features
        if config.init == "random":  # consistency distillation from scratch, for comparison
            for m in self.phi.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
        self.target = copy.deepcopy(self.phi).requires_grad_(False)
        # theta- <- mu theta- + (1 - mu) theta, one fused update over every tensor
        self._target_update = torch.optim.swa_utils.get_ema_multi_avg_fn(config.target_decay)
        T, ab = teacher.T, teacher.tables["alpha_bar"]
        sig = ((1 - ab) / ab).sqrt()  # float64, sigma_n of every DDPM step (sigma_0 = 0)
        s_min, s_max = sig[1].item(), sig[T].item()
        ramp = torch.linspace(0, 1, config.num_scales, dtype=torch.float64)
        karras = (s_min ** (1 / config.rho) + ramp * (s_max ** (1 / config.rho) - s_min ** (1 / config.rho))) ** config.rho
        karras[0], karras[-1] = s_min, s_max  # exactly, so the grid starts at DDPM step 1 and ends at T
        idx = torch.unique(torch.searchsorted(sig[1:].contiguous(), karras).clamp(max=T - 1) + 1)  # DDPM steps
        self.register_buffer("grid_n", idx, persistent=False)  # (N,) ascending DDPM steps
        self.register_buffer("grid_sigma", sig[idx].float(), persistent=False)
        w = WEIGHTINGS[config.weighting](sig[idx][1:] - sig[idx][:-1])  # (N-1,) float64
        self.register_buffer("grid_weight", (w / w.mean()).float(), persistent=False)
        self.sigma_min = s_min

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"main": list(self.phi.parameters())}

    def train(self, mode: bool = True) -> "Consistency":
        super().train(mode)
        self.teacher.eval()
        return self

    # -- pieces -----------------------------------------------------------------------------------
    def _b(self, s: Tensor, x: Tensor) -> Tensor:
        return s.view(-1, *([1] * (x.dim() - 1)))

    def teacher_eps(self, y: Tensor, i: Tensor) -> Tensor:
        s = self._b(self.grid_sigma[i], y)
        return self.teacher.eps(y * torch.rsqrt(1 + s**2), self.grid_n[i])

    def f(self, net: nn.Module, y: Tensor, i: Tensor) -> Tensor:
        """The consistency function at grid point i (module docstring): f = y at sigma_min, above it
        c_skip y + c_out F, or with ``init="teacher"`` the x0 prediction y - sigma F of the eps network F
        (clipped to [-1, 1] where the teacher's sampler clips), as LCM reads its student."""
        s, sd = self._b(self.grid_sigma[i], y), self.config.sigma_data
        big_f = net(y * torch.rsqrt(1 + s**2), self.grid_n[i].to(y.dtype) / self.teacher.T)
        c_out = (s - self.sigma_min) * sd * torch.rsqrt(sd**2 + s**2)
        if self.config.init == "teacher":
            x0 = y - s * big_f
            out = x0.clamp(-1, 1) if self.teacher.clip else x0
        else:
            out = sd**2 / ((s - self.sigma_min) ** 2 + sd**2) * y + c_out * big_f  # c_skip y + c_out F
        return torch.where(c_out > 0, out, y)

    @torch.no_grad()
    def teacher_step(self, y: Tensor, i: Tensor) -> Tensor:
        """One step of the teacher's PF-ODE dy/dsigma = eps from sigma_{i+1} to sigma_i (Heun or Euler)."""
        ds = self._b(self.grid_sigma[i] - self.grid_sigma[i + 1], y)
        d1 = self.teacher_eps(y, i + 1)
        y_euler = y + ds * d1
        if self.config.teacher_solver == "euler":
            return y_euler
        return y + ds * 0.5 * (d1 + self.teacher_eps(y_euler, i))

    # -- the five operations ------------------------------------------------------------------------
    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        x0 = batch.x
        i = torch.randint(0, len(self.grid_n) - 1, (x0.shape[0],), device=x0.device)
        y_hi = x0 + self._b(self.grid_sigma[i + 1], x0) * torch.randn_like(x0)
        with torch.no_grad():
            target = self.f(self.target, self.teacher_step(y_hi, i), i)
        d = (self.f(self.phi, y_hi, i + 1) - target).pow(2).flatten(1).mean(1)  # (B,) squared L2 per dimension
        return (self.grid_weight[i] * d).mean()

    def after_step(self, group: str, step: int) -> None:
        self._target_update(list(self.target.parameters()), list(self.phi.parameters()), None)

    @torch.no_grad()
    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Algorithm 1 from z ~ N(0, I): x = f(sigma_N z, sigma_N), then re-noise and denoise."""
        k = min(steps or self.config.sample_steps, len(self.grid_n))
        last = len(self.grid_n) - 1
        points = torch.linspace(last, 0, k + 1).round().long().tolist()[:-1]  # descending grid indices
        x: Tensor | None = None
        for j in points:
            i = torch.full((z.shape[0],), j, device=z.device, dtype=torch.long)
            s = self.grid_sigma[j].item()
            y = s * z if x is None else x + math.sqrt(max(s**2 - self.sigma_min**2, 0.0)) * torch.randn_like(z)
            x = self.f(self.phi, y, i)
        assert x is not None  # k >= 1 points
        return x.clamp(-1, 1) if self.data.is_image else x

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype), steps)

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> ConsistencyConfig:
        """The teacher is the tiny 'ddpm' run the test kit trains in ``workdir/teacher``."""
        return cls.Config(teacher=str(Path(workdir) / "teacher"), num_scales=6)
