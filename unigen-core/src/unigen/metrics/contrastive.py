"""The self-supervised evaluator for unlabelled images: SimCLR on the user's training split.

FID, KID and precision/recall need features that place similar images near each other. With class
labels the evaluator is a classifier (:mod:`unigen.metrics.evaluator`); without them, unigen trains
the same CNN body contrastively (SimCLR, Chen et al. 2020): two random views of each image in a
batch of B, projected by a small MLP head g and L2-normalised to z, and the NT-Xent loss

    L = -1/(2B) sum_i log( exp(z_i . z_j(i) / tau) / sum_{k != i} exp(z_i . z_k / tau) ),  tau = 0.2

where j(i) is the other view of the same image. The features are the body's output h (not g(h)),
as in the paper.

Why contrastive and not a denoising autoencoder: an autoencoder's code must keep everything needed
to redraw the pixels, so distances between its features are dominated by pixel-level detail, much
like distances between raw pixels; the contrastive objective keeps what tells one image from
another and drops what the augmentations change. The augmentations are chosen for FID: a random
shift of up to a quarter of the side (replicate padding) and a little Gaussian pixel noise. There
is no colour jitter and no flip, so colour, shape and size stay in the features: a generator that
gets the colours or the shapes wrong must be penalised.

How good it is, measured on the colour shapes (``shapes``, labels unused while training; 3,000
training images, 300 steps at batch 128, seed 0): a linear probe (logistic regression, 1,000
training / 1,000 held-out test images) on these 128 features predicts the colour with 0.999
accuracy (raw 3,072 pixels: 0.950; the same network untrained: 0.878), the scale class with 0.635
(pixels 0.525, untrained 0.518) and the shape class with 0.498 (pixels 0.400, untrained 0.465;
chance 0.25). So it is a usable, not a strong, feature space: a short CPU training run on small data
learns colour and size well and shape only partly; pass ``--evaluator FILE`` for a stronger network.
``tests/core/test_evaluator_unlabelled.py`` checks that training separates squares from circles
better than the untrained network does.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

TEMPERATURE = 0.2
NOISE = 0.05  # std of the pixel noise added to each view, images in [-1, 1]


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    """A random view of each image: a shift of up to side/8 pixels (replicate padding) plus noise.

    x: (B, C, H, W) -> (B, C, H, W)."""
    b, c, h, w = x.shape
    pad = max(1, h // 4)
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")  # (B, C, H + 2p, W + 2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
    view = xp[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    return view + NOISE * torch.randn(view.shape, generator=g)


def nt_xent(z: Tensor, tau: float = TEMPERATURE) -> Tensor:
    """NT-Xent over 2B normalised projections ``z`` (2B, D) where rows i and i + B are one image's views."""
    n = z.shape[0] // 2
    sim = z @ z.T / tau  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train_contrastive(net: Any, train: Any, *, seed: int, steps: int, batch_size: int = 128,
                      log: Any = None) -> float:
    """Train ``net`` (an :class:`~unigen.metrics.evaluator.EvaluatorNet` whose ``head`` is the
    projection head) with SimCLR on ``train``; returns the final loss."""
    g = torch.Generator().manual_seed(seed)
    n = len(train)
    batch_size = min(batch_size, n)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    started = time.perf_counter()
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randperm(n, generator=g)[:batch_size]
        x = train.floats(idx)  # (B, C, H, W)
        views = torch.cat([augment(x, g), augment(x, g)])  # (2B, C, H, W)
        z = F.normalize(net.head(net.body(views)), dim=1)  # (2B, D)
        loss = nt_xent(z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    if log is not None:
        log(f"self-supervised evaluator for {train.info.name!r}: {steps} steps in "
            f"{time.perf_counter() - started:.0f} s, final contrastive loss {float(loss.detach()):.3f}")
    return float(loss.detach())
