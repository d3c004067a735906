"""Continuous-time flows: the ODE dx/dt = v_theta(x, t), with t=0 data and t=1 noise.

One base class, :class:`ODEFlow`, holds what CNF, flow matching and rectified flow share; they differ only
in how ``v_theta`` is trained (``loss``).

- ``reverse`` / ``sample``: integrate from t=1 (z ~ N(0, I)) to t=0 with a sampler from the core registry,
  chosen by the config field ``sampler`` (``unigen sample RUN --steps N --set sampler=heun``).
- ``forward(x, t)``: the flow map phi_{0 -> t}(x), integrated from t=0 to t (t=1 when None).
- ``logprob``: the instantaneous change of variables (Chen et al. 2018, Thm. 1; FFJORD Eq. 4):

      d log p(x(t)) / dt = -tr(dv/dx (x(t), t))
      =>  log p_0(x) = log N(x(1); 0, I) + int_0^1 tr(dv/dx (x(t), t)) dt,   x(0) = x,

  solved as one augmented ODE [x, Delta] with torchdiffeq's adaptive dopri5 at the config's ``rtol`` and
  ``atol`` (the adjoint method for images by default). The trace is exact (D reverse-mode passes) for D <= AUTO_EXACT_DIM or
  ``trace="exact"``, else Hutchinson's estimator tr(A) = E[eps^T A eps], eps Rademacher and fixed along
  the solve (Hutchinson 1989; FFJORD Sec. 3.1), which makes log p unbiased (not p).
  The value is exact up to the solver tolerance with the exact trace (``logprob_kind`` "exact"); with
  Hutchinson's trace the instance reports "estimate". It is a density on the [-1, 1] data space, evaluated on dequantized data for discrete images.
"""

from __future__ import annotations

import math

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from unigen import ConfigError, DataInfo
from unigen.plugin import MLP, GenerativeModel, UNet, get_sampler, one_of, positive_float, positive_int, sampler

AUTO_EXACT_DIM = 16  # D reverse-mode passes per evaluation are cheaper than Hutchinson's noise up to here
TRACES = ("auto", "exact", "hutchinson")
NETS = ("auto", "mlp", "unet")


@attrs.frozen(kw_only=True)
class ODEFlowConfig:
    """Fields every ODE flow shares."""

    net: str = one_of("auto", NETS)  # auto: UNet for images, MLP for vectors
    hidden: int = positive_int(128)  # MLP width
    depth: int = positive_int(3)  # MLP hidden layers
    width: int = positive_int(32)  # UNet base channels
    # Sampling: a registered ODE solver; fixed-step ones use --steps (or default_steps).
    sampler: str = sampler("heun", "ode")
    # Tolerances of the adaptive solves (logprob, dopri5 sampling); FFJORD uses 1e-5.
    rtol: float = positive_float(1e-5)  # relative tolerance of the adaptive solves
    atol: float = positive_float(1e-5)  # absolute tolerance of the adaptive solves
    # logprob's divergence tr(dv/dx): exact (D backward passes), hutchinson (an unbiased one-probe
    # estimate, Grathwohl et al.), auto: exact up to AUTO_EXACT_DIM = 16 dimensions.
    trace: str = one_of("auto", TRACES)
    # Gradients of the likelihood solve. True: the adjoint method (Chen et al. 2018, Sec. 2; FFJORD's code
    # trains every model with torchdiffeq's odeint_adjoint): memory constant in the number of solver steps.
    # False: backpropagation through every dopri5 step, whose graph grows with the steps taken (8x8 digits at
    # width 32, batch 128: RSS past 19.8 GB within 15 minutes). None: by the data, the adjoint for images and
    # backpropagation for vectors (a small graph, and fewer evaluations than the adjoint's backward solve).
    adjoint: bool | None = attrs.field(default=None, validator=v.optional(v.instance_of(bool)))


def time_features(t: Tensor, freqs: int = 4) -> Tensor:
    """Smooth features of t in [0, 1]: t, sin(k pi t), cos(k pi t), k = 1..freqs. (B,) -> (B, 1 + 2 freqs).

    Low frequencies only, so the field is smooth in t and an adaptive solver takes few steps."""
    k = torch.arange(1, freqs + 1, device=t.device, dtype=t.dtype) * math.pi
    args = t[:, None] * k[None]
    return torch.cat([t[:, None], args.sin(), args.cos()], 1)


class VelocityField(nn.Module):
    """v_theta(x, t): an MLP on [x, time features] (vectors, or flattened images) or the core UNet."""

    def __init__(self, data: DataInfo, config: ODEFlowConfig) -> None:
        super().__init__()
        kind = config.net if config.net != "auto" else ("unet" if data.is_image else "mlp")
        if kind == "unet" and not data.is_image:
            raise ConfigError(f"net 'unet' needs image data; {data.name} has shape {tuple(data.shape)} (use 'mlp' or 'auto')")
        # Exactly one of the two is built.
        self.unet: UNet | None = (UNet(data.shape[0], config.width, size=data.shape[1])  # depth by resolution
                                  if kind == "unet" else None)
        self.mlp: MLP | None = (MLP([data.dim + 9] + [config.hidden] * config.depth + [data.dim], act=nn.SiLU)
                                if kind == "mlp" else None)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.unet is not None:
            return self.unet(x, t)
        assert self.mlp is not None  # built whenever the UNet is not
        h = torch.cat([x.flatten(1), time_features(t.to(x.dtype))], 1)  # (B, D + 9)
        return self.mlp(h).view_as(x)


# -- divergence -------------------------------------------------------------------------------------
def divergence_exact(out: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
    """tr(d out / d x) per example, by D reverse-mode passes. out, x: (B, *D) -> (B,)."""
    out_flat = out.flatten(1)
    div = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for i in range(out_flat.shape[1]):
        (g,) = torch.autograd.grad(out_flat[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
        div = div + g.flatten(1)[:, i]
    return div


def divergence_hutchinson(out: Tensor, x: Tensor, eps: Tensor, create_graph: bool = False) -> Tensor:
    """Hutchinson's estimate eps^T (d out / d x) eps per example, one vector-Jacobian product. (B,)."""
    (g,) = torch.autograd.grad(out, x, eps, create_graph=create_graph, retain_graph=True)
    return (g * eps).flatten(1).sum(1)


class AugmentedDynamics(nn.Module):
    """d/dt [x, Delta] = [v(x, t), tr dv/dx (x, t)], for torchdiffeq (a module, so the adjoint works)."""

    def __init__(self, field: nn.Module, eps: Tensor | None) -> None:
        super().__init__()
        self.field = field
        self.eps = eps  # None: exact trace

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, _ = state
        create_graph = torch.is_grad_enabled()  # training (or the adjoint's backward pass)
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            out = self.field(x, t.to(x.dtype).expand(x.shape[0]))
            if self.eps is None:
                div = divergence_exact(out, x, create_graph)
            else:
                div = divergence_hutchinson(out, x, self.eps, create_graph)
        if not create_graph:
            out, div = out.detach(), div.detach()
        return out, div


def standard_normal_logpdf(z: Tensor) -> Tensor:
    """log N(z; 0, I) per example. (B, *D) -> (B,)."""
    return -0.5 * (z.flatten(1) ** 2).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)


class ODEFlow(GenerativeModel):
    """Base of the continuous flows: a velocity field and the operations built on its ODE."""

    family = "flow"
    paradigm = "flow"
    # Exact up to the solver tolerance with the exact trace; Hutchinson's one-probe trace (trace="hutchinson",
    # or "auto" above AUTO_EXACT_DIM dimensions: every image) makes it an unbiased estimate of that value.
    logprob_kind = "exact"
    logprob_variants = {"exact": {"trace": "exact"}, "estimate": {"trace": "hutchinson"}}
    logprob_discrete = False
    Config = ODEFlowConfig
    default_steps = 20
    data_kinds = ("image", "vector")

    def __init__(self, config: ODEFlowConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.field = VelocityField(data, config)
        if self.trace() == "hutchinson":
            self.logprob_kind = "estimate"

    def trace(self) -> str:
        """The divergence used by ``logprob``: the config's, or for "auto" exact up to AUTO_EXACT_DIM."""
        if self.config.trace != "auto":
            return self.config.trace
        return "exact" if self.data.dim <= AUTO_EXACT_DIM else "hutchinson"

    def uses_adjoint(self) -> bool:
        """Whether the likelihood's gradient comes from the adjoint method: the config's, or for None on images."""
        return self.config.adjoint if self.config.adjoint is not None else self.data.is_image

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """v_theta(x, t) = dx/dt. x: (B, *D), t: (B,)."""
        return self.field(x, t)

    def solve(self, x: Tensor, t_start: float, t_end: float, steps: int | None = None) -> Tensor:
        """Integrate dx/dt = v from t_start to t_end with the configured registered sampler."""
        spec = get_sampler(self.config.sampler, kind="ode", host=self.host)
        n = steps or type(self).default_steps or 100
        return spec.solve(self.velocity, x, n, t_start=t_start, t_end=t_end, rtol=self.config.rtol,
                          atol=self.config.atol)

    def trajectory(self, z: Tensor, steps: int, segments: int = 10) -> tuple[list[float], list[Tensor]]:
        """States at ``segments + 1`` times from t=1 to t=0, solved segment by segment with the configured
        sampler (``steps`` in all)."""
        ts = torch.linspace(1.0, 0.0, segments + 1, dtype=torch.float64).tolist()
        per = max(1, steps // segments)
        xs = [z]
        for a, b in zip(ts[:-1], ts[1:]):
            xs.append(self.solve(xs[-1], a, b, per))
        return ts, xs

    # -- the five operations --------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """The flow map phi_{0 -> t}(x): data at t=0 carried to time t (t=1, the noise, when None).
        ``t`` of shape (B,) may differ per example; each distinct time is one solve."""
        if t is None:
            return self.solve(x, 0.0, 1.0)
        out = x.clone()
        for tv in torch.unique(t).tolist():
            pick = t == tv
            if tv > 0:
                out[pick] = self.solve(x[pick], 0.0, float(tv))
        return out

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Noise at t=1 -> data at t=0 with the configured sampler."""
        return self.solve(z, 1.0, 0.0, steps)

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        z = torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype)
        x = self.reverse(z, steps)
        return x.clamp(-1, 1) if self.data.is_image else x

    def log_density(self, x: Tensor) -> Tensor:
        """log p_0(x) by the augmented ODE from t=0 to t=1; differentiable when grad is enabled."""
        from torchdiffeq import odeint, odeint_adjoint

        c = self.config
        eps = None if self.trace() == "exact" else torch.randint(0, 2, x.shape, device=x.device).to(x.dtype) * 2 - 1
        dynamics = AugmentedDynamics(self.field, eps)
        ts = torch.tensor([0.0, 1.0], device=x.device, dtype=x.dtype)
        state = (x, torch.zeros(x.shape[0], device=x.device, dtype=x.dtype))
        solver = odeint_adjoint if (self.uses_adjoint() and torch.is_grad_enabled()) else odeint
        z, delta = solver(dynamics, state, ts, rtol=c.rtol, atol=c.atol, method="dopri5")
        return standard_normal_logpdf(z[-1]) + delta[-1]

    def logprob(self, x: Tensor) -> Tensor:
        """log p(x) in nats, shape (B,): exact up to the solver tolerance (instantaneous change of
        variables), or with Hutchinson's trace an unbiased estimate of it (``self.logprob_kind`` says which)."""
        return self.log_density(x)

    def latent(self, x: Tensor) -> Tensor:
        return self.forward(x).flatten(1)
