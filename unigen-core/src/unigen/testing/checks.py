"""The mathematical checks of the contract, as plain functions that raise ``AssertionError``.

Each takes a built model (eval mode) and the host whose hooks carry its operations, so a plugin that
overrides an operation through a hook is checked through that override.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor

from .. import ops
from ..errors import UnsupportedOperation
from ..model import DataInfo, GenerativeModel


def standard_normal_logpdf(z: Tensor) -> Tensor:
    """log N(z; 0, I) per example. (B, *D) -> (B,)."""
    return -0.5 * (z.flatten(1) ** 2).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)


def samples_in_range(x: Tensor, info: DataInfo) -> None:
    """Finite samples of the data's shape; images within the data range [-1, 1]."""
    assert tuple(x.shape[1:]) == tuple(info.shape), f"samples of shape {tuple(x.shape)} for data {info.shape}"
    assert torch.isfinite(x).all(), "non-finite samples"
    if info.is_image:
        lo, hi = float(x.min()), float(x.max())
        assert -1 - 1e-5 <= lo and hi <= 1 + 1e-5, f"image samples in [{lo:.3f}, {hi:.3f}], outside [-1, 1]"


@torch.no_grad()
def density_integrates_to_one(model: GenerativeModel, host: Any, n: int = 80, tol: float = 0.03) -> None:
    """int p(x) dx = 1 by the midpoint rule on an n x n grid over 2-D data.

    The box covers the model's own samples (0.1%-99.9% quantiles, widened by half their range on each
    side), so it holds the mass of a density whatever its scale; without samples, [-6, 6]^2.
    """
    torch.manual_seed(0)
    try:
        s = ops.sample(model, 4000, None, host=host).double()
        q = torch.quantile(s, torch.tensor([0.001, 0.999], dtype=s.dtype), dim=0)  # (2, 2): lo, hi per dim
        lo, hi = q[0] - 0.5 * (q[1] - q[0]), q[1] + 0.5 * (q[1] - q[0])
    except UnsupportedOperation:
        lo, hi = torch.full((2,), -6.0, dtype=torch.float64), torch.full((2,), 6.0, dtype=torch.float64)
    step = (hi - lo) / n
    axes = [lo[d] + (torch.arange(n, dtype=torch.float64) + 0.5) * step[d] for d in range(2)]
    grid = torch.cartesian_prod(*axes).to(model.device, torch.get_default_dtype())  # (n*n, 2)
    logp = torch.cat([ops.logprob(model, chunk, host=host).double().cpu() for chunk in grid.split(4096)])
    mass = float(logp.exp().sum() * step.prod())
    box = [[round(float(a), 2), round(float(b), 2)] for a, b in zip(lo, hi)]
    assert abs(mass - 1) < tol, f"the exact density integrates to {mass:.4f} over {box}, not 1"


@torch.no_grad()
def pmf_sums_to_one(model: GenerativeModel, host: Any, tol: float = 1e-3) -> None:
    """sum_v P(v) = 1 over every image of the model's (small) discrete data."""
    info = model.data
    k = info.levels
    assert k is not None, "a pmf check needs discrete data"
    values = torch.tensor(list(itertools.product(range(k), repeat=info.dim)), dtype=torch.get_default_dtype())
    x = (values / (k - 1) * 2 - 1).view(-1, *info.shape).to(model.device)  # levels -> [-1, 1]
    total = float(ops.logprob(model, x, host=host).double().exp().sum())
    assert abs(total - 1) < tol, f"the exact pmf sums to {total:.5f} over all {len(x)} images, not 1"


def change_of_variables(model: GenerativeModel, x: Tensor, host: Any) -> None:
    """reverse(forward(x)) = x and log p(x) = log N(f(x); 0, I) + log|det df/dx| (autograd Jacobian)."""
    x = x.to(model.device)
    with torch.no_grad():
        z = ops.forward(model, x, None, host=host)
        assert z.shape == x.shape, f"forward of a bijective model gave shape {tuple(z.shape)} for {tuple(x.shape)}"
        back = ops.reverse(model, z, None, host=host)
        err = float((back - x).abs().max())
        assert err < 1e-3 * (1 + float(x.abs().max())), f"reverse(forward(x)) differs from x by {err:.2e}"
        logp = ops.logprob(model, x, host=host).double()
    expected = []
    for xi in x:
        f = lambda v, xi=xi: ops.forward(model, v.view(1, *xi.shape), None, host=host).flatten()  # noqa: E731
        jac = torch.autograd.functional.jacobian(f, xi.flatten())  # (D, D)
        logdet = torch.linalg.slogdet(jac.double()).logabsdet
        expected.append(standard_normal_logpdf(f(xi.flatten()).view(1, -1).double())[0] + logdet)
    want = torch.stack(expected).detach().cpu()
    gap = float((logp.cpu() - want).abs().max())
    assert gap < 1e-3 * (1 + float(want.abs().max())), (
        f"logprob differs from the change of variables with the autograd Jacobian by {gap:.4f} nats "
        f"(logprob {logp.tolist()}, log N(f(x)) + log|det J| {want.tolist()})")


@torch.no_grad()
def bound_below(bound: GenerativeModel, reference: GenerativeModel, x: Tensor, host: Any) -> None:
    """The bound's mean over x is not above its reference's (allowing 4 standard errors of noise)."""
    torch.manual_seed(0)
    gap = ops.logprob(bound, x, host=host).double() - ops.logprob(reference, x, host=host).double()  # (B,)
    se = float(gap.std() / math.sqrt(len(gap))) if len(gap) > 1 else 0.0
    assert float(gap.mean()) <= 4 * se + 1e-6, (
        f"the bound exceeds its {reference.logprob_kind} reference by {float(gap.mean()):.4f} nats on average")


@torch.no_grad()
def unbiased(estimate: GenerativeModel, exact: GenerativeModel, x: Tensor, host: Any, repeats: int = 16) -> None:
    """The mean of repeated estimates matches the exact value within noise (5 standard errors) and the
    solver's tolerance."""
    torch.manual_seed(0)
    want = ops.logprob(exact, x, host=host).double()  # (B,)
    draws = torch.stack([ops.logprob(estimate, x, host=host).double() for _ in range(repeats)])  # (R, B)
    se = draws.std(0) / math.sqrt(repeats)
    gap = (draws.mean(0) - want).abs()
    allowed = 5 * se + 1e-2 * (1 + want.abs())
    assert (gap <= allowed).all(), (
        f"the estimate's mean is off the exact value by {gap.tolist()} (allowed {allowed.tolist()})")
