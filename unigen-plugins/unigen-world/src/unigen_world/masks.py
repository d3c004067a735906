"""I-JEPA multi-block masking (Assran et al. 2023, Sec. 3 and App. C; the reference MaskCollator).

On a gh x gw grid of patches, for one batch:

* one target block size is drawn: scale s ~ U(target_scale), aspect a ~ U(target_aspect),
  height = round(sqrt(s*gh*gw*a)), width = round(sqrt(s*gh*gw/a)), clipped to the grid;
* each example gets ``M`` target blocks of that size at uniform positions (they may overlap);
* each example gets one context block (scale ~ U(context_scale), aspect 1) **with every target
  patch removed**, redrawn until it keeps at least ``min_context`` patches;
* the context index lists are cut to the shortest one in the batch, as the reference collator does,
  so the batch is one tensor.

Indices are raster positions ``row * gw + col``. The context never contains a target patch: the
encoder only ever receives the patches listed in the context indices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def block_size(gh: int, gw: int, scale: tuple[float, float], aspect: tuple[float, float]) -> tuple[int, int]:
    """(height, width) of a block covering about ``s`` of the grid with aspect ``a = height/width``."""
    s = scale[0] + float(torch.rand(())) * (scale[1] - scale[0])
    a = aspect[0] + float(torch.rand(())) * (aspect[1] - aspect[0])
    area = s * gh * gw
    h = min(max(1, round(math.sqrt(area * a))), gh)
    w = min(max(1, round(math.sqrt(area / a))), gw)
    return h, w


def blocks(n: int, gh: int, gw: int, h: int, w: int) -> Tensor:
    """Raster indices of n h x w blocks at uniform positions: (n, h*w) long, sorted within a block."""
    top = torch.randint(0, gh - h + 1, (n, 1))
    left = torch.randint(0, gw - w + 1, (n, 1))
    dr = torch.arange(h).repeat_interleave(w)  # (h*w,) row offsets
    dc = torch.arange(w).repeat(h)  # (h*w,) column offsets
    return (top + dr) * gw + left + dc  # (n, h*w)


def to_mask(index: Tensor, n: int) -> Tensor:
    """Indices (B, ..., K) -> bool (B, n), True at every listed patch."""
    m = torch.zeros(index.shape[0], n, dtype=torch.bool)
    return m.scatter_(1, index.reshape(index.shape[0], -1), True)


def sample_masks(
    batch: int, gh: int, gw: int, *, num_targets: int, target_scale: tuple[float, float],
    target_aspect: tuple[float, float], context_scale: tuple[float, float], min_context: int,
    tries: int = 50,
) -> tuple[Tensor, Tensor]:
    """Context and target indices for one batch.

    :return: ``context`` (B, Kc) long and ``targets`` (B, M, K) long, raster patch indices; no index
        of ``targets[b]`` appears in ``context[b]``.
    """
    n = gh * gw
    min_context = min(min_context, n - 1)
    th, tw = block_size(gh, gw, target_scale, target_aspect)
    if th * tw == n:  # a target covering the grid would leave no context
        th, tw = (th, tw - 1) if tw > 1 else (th - 1, tw)
    ch, cw = block_size(gh, gw, context_scale, (1.0, 1.0))
    targets = torch.empty(batch, num_targets, th * tw, dtype=torch.long)
    keep = torch.zeros(batch, n, dtype=torch.bool)
    todo = torch.arange(batch)  # examples still without an acceptable context
    for attempt in range(tries):
        k = len(todo)
        tg = blocks(k * num_targets, gh, gw, th, tw).view(k, num_targets, th * tw)
        # A context block minus the targets; in the second half of the tries, the whole complement.
        region = torch.ones(k, n, dtype=torch.bool) if attempt >= tries // 2 else to_mask(blocks(k, gh, gw, ch, cw), n)
        kp = region & ~to_mask(tg, n)
        ok = kp.sum(1) >= min_context
        targets[todo[ok]], keep[todo[ok]] = tg[ok], kp[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            break
    else:
        raise ValueError(f"{num_targets} target blocks of {th}x{tw} left fewer than {min_context} context "
                         f"patches of the {gh}x{gw} grid in {tries} tries; lower num_targets or target_scale")
    kc = int(keep.sum(1).min())
    order = torch.where(keep, torch.arange(n), n + torch.arange(n)).argsort(1)  # kept patches first, in raster order
    return order[:, :kc], targets  # (B, Kc) cut to the shortest as in I-JEPA, (B, M, K)
