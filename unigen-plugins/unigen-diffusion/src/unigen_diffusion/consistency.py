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
This teacher predicts eps, so three starts are offered:

- ``copy`` (default): net is a copy of the teacher's eps network: its features, but at the start f is not
  an x0 estimate (at large sigma, f ~ sigma_data eps_teacher);
- ``teacher``: F_theta = F_teacher + net with F_teacher = (x0_teacher - c_skip y) / c_out and net's output
  layer zeroed, so f equals the teacher's x0 prediction y - sigma eps_teacher exactly at the start (the
  frozen teacher is evaluated inside f; net learns the correction);
- ``random``: a freshly initialised network.

Measured, 1-step MMD^2 to fresh moons after 300 CD steps at the default lr, mean of 2 seeds (a standard
normal scores 0.117, the teacher's 1-step DDIM 1.06, the untrained ``teacher`` start 1.06):
``copy`` 0.078, ``teacher`` 0.248, ``random`` 0.677
(``OMP_NUM_THREADS=1 python benchmarks/consistency_warm_start.py --seeds 2 --teacher-steps 1500``). After
1,500 steps at lr 5e-4 (one seed): ``random`` 0.057, ``teacher`` 0.205. On digits (the learn test's
teacher, 300 steps at lr 5e-4): ``copy`` 0.22, ``teacher`` 0.52, ``random`` 0.74, 1-step DDIM 0.62. The
x0 start begins at the teacher's 1-step x0 prediction, which an eps teacher makes badly at large sigma
(its error is multiplied by sigma), and corrects it more slowly than the copied network learns; so
``copy`` stays the default.

Training: on the teacher grid sigma_1 < ... < sigma_N (N = ``num_scales`` DDPM steps spaced as Karras et al.'s
rho = 7 grid), draw i, y_{i+1} = x_0 + sigma_{i+1} z, take one teacher ODE step (Heun, or Euler = DDIM) to
y_hat_i, and minimise || f_theta(y_{i+1}, sigma_{i+1}) - f_theta-(y_hat_i, sigma_i) ||^2 with the target network
theta- <- mu theta- + (1 - mu) theta after each step (``after_step``). Sampling (Algorithm 1): x = f(sigma_N z,
sigma_N) in one step; with k steps, re-noise to sigma = sqrt(tau^2 - sigma_min^2) on evenly spaced grid points and
apply f again.
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
from .networks import output_layer


@attrs.frozen(kw_only=True)
class ConsistencyConfig:
    teacher: str = text_field("")  # a trained ddpm/ddim run directory
    num_scales: int = int_at_least(18, 2)  # N (paper: 18 for CD)
    target_decay: float = fraction(0.95)  # mu
    sigma_data: float = positive_float(0.5)
    rho: float = positive_float(7.0)  # Karras et al. 2022
    teacher_solver: str = one_of("heun", ("heun", "euler"))
    sample_steps: int = positive_int(1)
    # How the student starts (module docstring, with the measured comparison): "copy": F is a copy of the
    # teacher's eps network; "teacher": f is exactly the teacher's x0 prediction; "random": a fresh network.
    init: str = one_of("copy", ("copy", "teacher", "random"))


class Consistency(GenerativeModel):
    family = "diffusion"
    paradigm = "score"
    logprob_kind = "none"
    no_logprob_reason = "a consistency model maps noise to data without a tractable density"
    Config = ConsistencyConfig
    default_steps = 1
    needs_runs = {"teacher": "ddpm"}
    data_kinds = ("image", "vector")
    trainer_defaults = {"lr": 2e-4}

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
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        elif config.init == "teacher":  # a zero output layer: F_theta = F_teacher + 0, f = the teacher's x0
            head = output_layer(self.phi)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
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
        """The consistency function at grid point i (boundary parametrization, module docstring).

        Warm start: F_theta = F_teacher + net with F_teacher = (x0_teacher - c_skip y) / c_out, so
        f = x0_teacher + c_out net where c_out > 0 (computed so, without dividing by c_out) and
        f = y at sigma_min. ``init="random"``: F_theta = net.
        """
        s, sd = self._b(self.grid_sigma[i], y), self.config.sigma_data
        big_f = net(y * torch.rsqrt(1 + s**2), self.grid_n[i].to(y.dtype) / self.teacher.T)
        c_out = (s - self.sigma_min) * sd * torch.rsqrt(sd**2 + s**2)
        if self.config.init == "teacher":
            with torch.no_grad():
                base = y - s * self.teacher_eps(y, i)  # the teacher's x0 prediction
        else:
            base = sd**2 / ((s - self.sigma_min) ** 2 + sd**2) * y  # c_skip y
        return torch.where(c_out > 0, base + c_out * big_f, y)

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
        return (self.f(self.phi, y_hi, i + 1) - target).pow(2).mean()

    def after_step(self, group: str, step: int) -> None:
        self._target_update(list(self.target.parameters()), list(self.phi.parameters()), None)

    @torch.no_grad()
    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Algorithm 1 from z ~ N(0, I): x = f(sigma_N z, sigma_N), then re-noise and denoise."""
        k = min(steps or self.config.sample_steps, len(self.grid_n))
        last = len(self.grid_n) - 1
        points = torch.linspace(last, 0, k + 1).round().long().tolist()[:-1]  # descending grid indices
        x = None
        for j in points:
            i = torch.full((z.shape[0],), j, device=z.device, dtype=torch.long)
            s = self.grid_sigma[j].item()
            y = s * z if x is None else x + math.sqrt(max(s**2 - self.sigma_min**2, 0.0)) * torch.randn_like(z)
            x = self.f(self.phi, y, i)
        return x.clamp(-1, 1) if self.data.is_image else x

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype), steps)

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> ConsistencyConfig:
        """The teacher is the tiny 'ddpm' run the test kit trains in ``workdir/teacher``."""
        return cls.Config(teacher=str(Path(workdir) / "teacher"), num_scales=6)
