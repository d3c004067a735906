"""DDPM's variational bound (Ho et al. 2020, Eq. 5) is computed right: term by term against the textbook
Gaussians, and as a whole by an invariant. For data that are K distinct points, the best eps-predictor is
known in closed form (the posterior mean of x_0 under the empirical distribution); plugged into the bound
code, the bound must come out near the data's true NLL, log K nats per example, and not below it (no
model of K points can do better on average: the mean of -log P over them is at least log K, Gibbs)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import unigen
from unigen.testing import untrained

torch.set_num_threads(1)
TINY = {"net": "mlp", "hidden": 32, "depth": 1}


def optimal_eps(model, points):
    """eps*(x_n, n) = (x_n - sqrt(a_n) E[x_0 | x_n]) / sqrt(1 - a_n), with E[x_0 | x_n] the softmax-weighted
    mean of the K ``points`` (K, *D) under q(x_n | x_0) = N(sqrt(a_n) x_0, (1 - a_n) I)."""
    def eps(x, n):
        a = model.alpha_bar[n].to(x.dtype).view(-1, *[1] * (x.dim() - 1))  # (B, 1, 1, 1)
        d2 = (x[:, None] - a.sqrt()[:, None] * points[None]).flatten(2).pow(2).sum(-1)  # (B, K)
        w = torch.softmax(-d2 / (2 * (1 - a.flatten()[:, None])), 1)
        x0 = torch.einsum("bk,k...->b...", w, points)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()
    return eps


@pytest.mark.parametrize("K", [1, 16])
def test_the_bound_of_the_optimal_denoiser_on_k_points_is_log_k(K):
    """T = 1000 steps of the linear schedule, 8x8 digits on 17 levels. Measured (4 repeats of each point, seeds
    0-2): K=1 0.001 nats, K=16 2.75-2.79 against log 16 = 2.77, i.e. 0.062 bits/dim, where the uniform
    distribution over the levels has 4.09. The bound is one draw of x_n per term, so it may fall a little
    under log K by chance; the tolerance is three times the spread measured."""
    points = unigen.load_dataset("digits").x[:K]  # distinct digits on the 17-level grid
    model = untrained("ddpm", config=TINY)
    model.eps = optimal_eps(model, points)
    torch.manual_seed(0)
    nll = -model.logprob(points.repeat(4, 1, 1, 1))  # one draw of x_n per term: average 4 draws per point
    assert float(nll.mean()) == pytest.approx(math.log(K), abs=0.15), (float(nll.mean()), math.log(K))


def test_each_term_is_ho_et_als_gaussian_kl_and_discretized_decoder():
    """The bound recomputed with torch.distributions: L_T, the KL terms with p(x_{n-1} | x_n) =
    N(mu_theta, beta_tilde_n) (Eq. 5, 7, 11), the decoder N(x0_hat, beta_1) integrated over each level's bin,
    the edge bins to +-inf (Eq. 13). The denoiser: the optimal one for 4 digits plus a tenth of an untrained
    network (an imperfect predictor whose decoder bins keep a mass float64 can subtract)."""
    model = untrained("ddpm", config={**TINY, "timesteps": 20}).double()
    x0 = unigen.load_dataset("digits").x[:4].double()
    best, net = optimal_eps(model, x0), model.eps
    model.eps = lambda x, n: best(x, n) + 0.1 * net(x, n)
    torch.manual_seed(3)
    got = model.logprob(x0)
    torch.manual_seed(3)  # the same draws of x_n, in the same order (n = T .. 1)
    ab, var, betas, alphas = model.alpha_bar, model.posterior_var, model.betas, model.alphas  # the buffers
    T, flat = model.T, lambda u: u.flatten(1).sum(1)
    want = -flat(kl_divergence(Normal(ab[T].sqrt() * x0, (1 - ab[T]).sqrt()), Normal(0.0, 1.0)))
    for n in range(T, 0, -1):
        nn_ = torch.full((4,), n)
        xn = ab[n].sqrt() * x0 + (1 - ab[n]).sqrt() * torch.randn_like(x0)
        x0_hat = ((xn - (1 - ab[n]).sqrt() * model.eps(xn, nn_)) / ab[n].sqrt()).clamp(-1, 1)
        c0 = ab[n - 1].sqrt() * betas[n] / (1 - ab[n])  # q(x_{n-1} | x_n, x_0)'s mean: c0 x_0 + cn x_n (Eq. 7)
        cn = alphas[n].sqrt() * (1 - ab[n - 1]) / (1 - ab[n])
        mu_theta = c0 * x0_hat + cn * xn  # Eq. 11 written through x0_hat; at n = 1 it is x0_hat
        if n > 1:
            q, p = Normal(c0 * x0 + cn * xn, var[n].sqrt()), Normal(mu_theta, var[n].sqrt())
            want = want - flat(kl_divergence(q, p))
        else:
            decoder = Normal(mu_theta, betas[1].sqrt())
            half = 1 / 16  # 17 levels in [-1, 1]
            upper = torch.where(x0 > 1 - half, torch.ones_like(x0), decoder.cdf(x0 + half))
            lower = torch.where(x0 < -1 + half, torch.zeros_like(x0), decoder.cdf(x0 - half))
            want = want + flat((upper - lower).clamp_min(1e-300).log())
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
