"""Unbalanced optimal transport: the Wasserstein flow of :mod:`.wasserstein_flow` with the data marginal
relaxed by a KL mass penalty, which lets the model discount outliers (Chizat, Peyre, Schmitzer & Vialard
2018, "Scaling algorithms for unbalanced optimal transport problems"; the reweighting of the target as in
Yang & Uhler 2019, "Scalable Unbalanced Optimal Transport using Generative Adversarial Networks").

Per batch, the model samples y_i = T(z_i) (mass 1/n each, a hard marginal) are transported onto the data
x_j (mass 1/m each, a soft marginal) by the semi-relaxed entropic UOT problem

    min_{pi >= 0}  <pi, C> + eps KL(pi | a b^T) + rho KL(pi^T 1 | b),   pi 1 = a,   C_ij = |y_i - x_j|^2,

solved by log-domain Sinkhorn iterations (Chizat et al. 2018, Alg. 2; the relaxed update carries the
factor rho / (rho + eps)). Its data marginal m = pi^T 1 gives per-point weights w_j = m_j / b_j: a data
point that the model's mass would have to travel further than ~rho to reach keeps little mass, i.e. an
outlier is dropped, while points near the model's mass keep weight ~1. The weights (constants of the
gradient: an alternating minimisation over the relaxed marginal) then reweight the data in the MMD,

    MMD_w^2(y, x) = mean_{i != j} k(y_i, y_j) + sum_{i != j} w_i w_j k(x_i, x_j) / (m (m - 1))
                    - 2 mean_{i, j} k(y_i, x_j) w_j,       mean(w) = 1,

with the same multi-scale RBF kernel (:func:`unigen.metrics.mmd.rbf_kernel`). rho -> infinity gives
w = 1, the balanced ``wasserstein-flow``. The JKO proximal term is unchanged.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from unigen.plugin import positive_float, positive_int, rbf_kernel

from .wasserstein_flow import WassersteinFlow, WassersteinFlowConfig


@attrs.frozen(kw_only=True)
class UnbalancedOTConfig(WassersteinFlowConfig):
    # KL mass penalty rho, in units of the squared-distance cost: a data point further than ~sqrt(rho)
    # from the model's mass is dropped; rho -> infinity is balanced OT.
    rho: float = positive_float(1.0)
    blur: float = positive_float(0.1)  # entropic regularisation epsilon of the plan, in units of the cost
    sinkhorn_iters: int = positive_int(30)  # iterations of each Sinkhorn solve


@torch.no_grad()
def relaxed_marginal_weights(y: Tensor, x: Tensor, rho: float, blur: float, iters: int) -> Tensor:
    """w_j = m_j / b_j of the semi-relaxed entropic UOT plan from y (n, *D) to x (m, *D). (m,), mean 1."""
    yd, xd = y.flatten(1).double(), x.flatten(1).double()
    cost = torch.cdist(yd, xd).pow(2)  # (n, m)
    n, m = cost.shape
    log_a = torch.full((n,), -torch.log(torch.tensor(float(n))).item(), dtype=cost.dtype, device=cost.device)
    log_b = torch.full((m,), -torch.log(torch.tensor(float(m))).item(), dtype=cost.dtype, device=cost.device)
    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    damp = rho / (rho + blur)
    for _ in range(iters):
        f = -blur * torch.logsumexp(log_b[None, :] + (g[None, :] - cost) / blur, 1)  # exact marginal a
        g = -damp * blur * torch.logsumexp(log_a[:, None] + (f[:, None] - cost) / blur, 0)  # relaxed marginal
    log_plan = log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - cost) / blur
    w = torch.logsumexp(log_plan, 0).exp() / log_b.exp()  # m_j / b_j
    return (w / w.mean()).to(y.dtype)


def weighted_mmd2(y: Tensor, x: Tensor, w: Tensor, scales) -> Tensor:
    """MMD^2 between the uniform measure on y (n, *D) and x (m, *D) weighted by w (m,), mean(w) = 1."""
    n, m = y.shape[0], x.shape[0]
    kyy, kxx, kyx = rbf_kernel(y, y, scales), rbf_kernel(x, x, scales), rbf_kernel(y, x, scales)
    w = w.double()
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    wxx = w[:, None] * kxx * w[None, :]
    sxx = (wxx.sum() - wxx.diagonal().sum()) / (m * (m - 1))
    return syy + sxx - 2 * (kyx * w[None, :]).mean()


class UnbalancedOT(WassersteinFlow):
    Config = UnbalancedOTConfig

    def weights(self, y: Tensor, x: Tensor) -> Tensor:
        """The relaxed data marginal's weights for model samples y and data x: (m,), mean 1."""
        c = self.config
        return relaxed_marginal_weights(y, x, c.rho, c.blur, c.sinkhorn_iters)

    def discrepancy(self, y: Tensor, x: Tensor) -> Tensor:
        return weighted_mmd2(y, x, self.weights(y, x), self.config.scales).to(y.dtype)
