"""Sample-quality scores on feature matrices: FID, KID, Inception Score, precision and recall.

Everything here is a pure function of feature (or probability) matrices, computed in float64.

FID (Heusel et al. 2017, the Fréchet distance of two Gaussians fitted to the features)::

    FID = |mu_r - mu_g|^2 + tr(S_r) + tr(S_g) - 2 tr((S_r S_g)^{1/2})

S_r S_g is not symmetric, but it is similar to the symmetric positive semi-definite
M = S_r^{1/2} S_g S_r^{1/2} (conjugate by S_r^{1/2}), so tr((S_r S_g)^{1/2}) = sum_i sqrt(lambda_i(M)).
Both square roots come from symmetric eigen-decompositions (``eigh``) with eigenvalues clamped at 0,
which is stable where scipy's general ``sqrtm`` returns complex noise for near-singular covariances.

KID (Binkowski et al. 2018): the unbiased estimator of the squared MMD with the cubic polynomial
kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets; zero in expectation when both sets
come from the same distribution (so an estimate can be slightly negative). The reported std is the
population std (divisor n) of the subset estimates, as torchmetrics and torch-fidelity report it.

Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), over ``splits`` disjoint parts;
between 1 and the number of classes.

Precision and recall (Kynkaanniemi et al. 2019): the real manifold is the union of balls centred at
each real feature with radius its distance to its k-th nearest real neighbour (k = 3); precision is
the fraction of generated features inside it, recall the fraction of real features inside the
generated manifold built the same way. A set against itself scores 1 and 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mean_cov(f: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), in float64."""
    f = f.double()
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / max(f.shape[0] - 1, 1)


def _sqrt_psd(s: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def trace_sqrt_product(s1: Tensor, s2: Tensor) -> Tensor:
    """tr((s1 s2)^{1/2}) for symmetric PSD s1, s2, via the eigenvalues of s1^{1/2} s2 s1^{1/2}."""
    r = _sqrt_psd(s1.double())
    m = r @ s2.double() @ r
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()


def frechet_distance(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    mu1, mu2, s1, s2 = mu1.double(), mu2.double(), s1.double(), s2.double()
    value = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * trace_sqrt_product(s1, s2)
    return max(float(value), 0.0)  # rounding can leave -1e-12 for identical sets


def fid(real: Tensor, fake: Tensor) -> float:
    """FID between two feature matrices (N, F) and (M, F)."""
    return frechet_distance(*mean_cov(real), *mean_cov(fake))


def _poly_kernel(a: Tensor, b: Tensor) -> Tensor:
    return (a @ b.T / a.shape[1] + 1).pow(3)


def mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """Unbiased squared MMD with the KID kernel between x (m, F) and y (n, F)."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and population standard deviation of the unbiased MMD^2 over ``subsets`` random subsets.

    The std divides by n (not n - 1), as torchmetrics' and torch-fidelity's KID do, so the figures
    compare with theirs.
    """
    real, fake = real.double(), fake.double()
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError("KID needs at least two features in each set")
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        i = torch.randperm(real.shape[0], generator=g)[:size]
        j = torch.randperm(fake.shape[0], generator=g)[:size]
        values.append(mmd2_unbiased(real[i], fake[j]))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(correction=0))


def inception_score(probs: Tensor, splits: int = 10) -> tuple[float, float]:
    """IS: mean and standard deviation over ``splits`` parts of exp(E KL(p(y|x) || p(y)))."""
    p = probs.double().clamp(min=1e-12)
    splits = max(1, min(splits, p.shape[0]))
    scores = []
    for part in torch.tensor_split(p, splits):
        py = part.mean(0, keepdim=True)
        kl = (part * (part.log() - py.log())).sum(1).mean()
        scores.append(math.exp(float(kl)))
    t = torch.tensor(scores, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(scores) > 1 else 0.0


def knn_radii(f: Tensor, k: int = 3, batch: int = 1024) -> Tensor:
    """Distance of each row of f (N, F) to its k-th nearest other row, computed ``batch`` rows at a time."""
    f = f.double()
    out = []
    for start in range(0, f.shape[0], batch):
        d = torch.cdist(f[start : start + batch], f)  # (b, N)
        # the k+1 smallest include the point itself at distance 0
        out.append(d.topk(min(k + 1, f.shape[0]), dim=1, largest=False).values[:, -1])
    return torch.cat(out)


def coverage_fraction(points: Tensor, centres: Tensor, radii: Tensor, batch: int = 1024) -> float:
    """Fraction of ``points`` inside at least one ball (centre, radius)."""
    points, centres = points.double(), centres.double()
    inside = 0
    for start in range(0, points.shape[0], batch):
        d = torch.cdist(points[start : start + batch], centres)  # (b, M)
        inside += int((d <= radii.unsqueeze(0) * (1 + 1e-9)).any(1).sum())
    return inside / points.shape[0]


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of Kynkaanniemi et al. 2019 with k-NN manifolds."""
    precision = coverage_fraction(fake, real, knn_radii(real, k))
    recall = coverage_fraction(real, fake, knn_radii(fake, k))
    return precision, recall
