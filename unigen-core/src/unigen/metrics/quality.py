"""The sample-quality metrics of ``unigen eval``: ``fid``, ``kid``, ``is`` and ``pr``.

They share one pass over the data and one pass over the model, cached on the :class:`EvalContext`:

- reference: ``n`` examples of the training split (a seeded subset), the usual FID reference;
- generated: ``n`` samples drawn ``batch_size`` at a time, each chunk turned into evaluator features
  at once, so memory holds the (n, F) feature matrix and one chunk of images, never all n images.
  With ``ctx.deadline`` the drawing stops after the chunk that passes it (``sample_n`` says how many).

Features come from the dataset's evaluator (:mod:`unigen.metrics.evaluator`: a classifier when the
data has labels, a self-supervised CNN when it has none) or from the user's module (``--evaluator
FILE``). A metric that cannot be computed (a model that cannot sample, vector data, the Inception
Score without classes) reports its keys as None with the reason.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

from ..errors import DataError, UnsupportedOperation
from . import scores
from .evaluator import Evaluator, dataset_evaluator, user_evaluator

if TYPE_CHECKING:
    from . import EvalContext

GRID = 64  # samples kept from the first chunk for pictures
# metric id -> (the keys it reports, the key of its reason when not available)
KEYS = {"fid": (("fid",), "fid_reason"), "kid": (("kid", "kid_std"), "kid_reason"),
        "is": (("is", "is_std", "is_data"), "is_reason"), "pr": (("precision", "recall"), "pr_reason")}


@attrs.frozen
class Features:
    features: Tensor  # (N, F) float64
    probs: Tensor | None  # (N, K) float64, or None when the evaluator has no class head
    chunk_seconds: tuple[tuple[int, float], ...] = ()  # (samples, seconds) per sampling chunk
    nonfinite: int = 0  # generated samples with NaN/inf pixels (set to 0 before scoring)
    grid: Tensor | None = None  # the first samples, for pictures


def evaluator(ctx: "EvalContext") -> Evaluator:
    if "evaluator" not in ctx.cache:
        if ctx.evaluator:
            ev = user_evaluator(ctx.evaluator)
        else:
            ev = dataset_evaluator(ctx.dataset_name, ctx.host, seed=ctx.evaluator_seed,
                                   data_dir=ctx.data_dir or ctx.record.get("data_dir"), log=ctx.log)
        ctx.cache["evaluator"] = ev.to(ctx.model.device)
    return ctx.cache["evaluator"]


def _check_images(ctx: "EvalContext") -> None:
    if len(ctx.model.data.shape) != 3:
        raise DataError(f"{ctx.dataset_name!r} is not image data: sample-quality scores need images")


def reference(ctx: "EvalContext") -> Features:
    """Evaluator features of ``n`` training examples (a subset drawn with ``ctx.seed``)."""
    key = ("reference", ctx.n, ctx.seed)
    if key not in ctx.cache:
        _check_images(ctx)
        ev = evaluator(ctx)
        train = ctx.split("train")
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(ctx.seed))[: min(ctx.n, len(train))]
        f, p = ev(train.floats(idx), ctx.batch_size)
        ctx.cache[key] = Features(f, p)
    return ctx.cache[key]


def generated(ctx: "EvalContext") -> Features:
    """Evaluator features of ``n`` model samples, drawn in chunks of ``batch_size``."""
    key = ("generated", ctx.n, ctx.steps, ctx.seed)
    if key not in ctx.cache:
        _check_images(ctx)
        ev = evaluator(ctx)
        feats, probs, times = [], [], []
        nonfinite, grid, done = 0, None, 0
        torch.manual_seed(ctx.seed)
        with torch.no_grad():
            while done < ctx.n:
                k = min(ctx.batch_size, ctx.n - done)
                started = time.perf_counter()
                x = ctx.host.call("unigen_sample", model=ctx.model, num_samples=k, steps=ctx.steps)
                if x.is_cuda:
                    torch.cuda.synchronize()
                times.append((k, time.perf_counter() - started))
                if tuple(x.shape[1:]) != tuple(ctx.model.data.shape):
                    raise DataError(f"{ctx.model.model_id} sampled shape {tuple(x.shape[1:])}, the data has {ctx.model.data.shape}")
                nonfinite += int((~torch.isfinite(x)).flatten(1).any(1).sum())
                if grid is None:
                    grid = x[:GRID].detach().float().cpu()
                f, p = ev.batch(x)
                feats.append(f)
                if p is not None:
                    probs.append(p)
                done += k
                if ctx.out_of_time() and done >= 2 * min(ctx.batch_size, ctx.n):  # keep >= 2 chunks
                    break
        ctx.cache[key] = Features(torch.cat(feats), torch.cat(probs) if probs else None, tuple(times), nonfinite, grid)
    return ctx.cache[key]


def _guarded(keys: tuple[str, ...], reason_key: str, compute, ctx: "EvalContext") -> dict[str, Any]:
    try:
        return compute(ctx)
    except (UnsupportedOperation, DataError) as exc:
        return {**dict.fromkeys(keys), reason_key: str(exc)}


def _common(ctx: "EvalContext", gen: Features) -> dict[str, Any]:
    ev = evaluator(ctx)
    return {"evaluator": ev.name, "evaluator_test_accuracy": ev.accuracy, "sample_n": int(gen.features.shape[0]),
            "sample_steps": ctx.steps, "samples_nonfinite": gen.nonfinite}


def fid(ctx: "EvalContext") -> dict[str, Any]:
    """Fréchet distance between evaluator features of n samples and n training examples."""
    def compute(ctx):
        real, gen = reference(ctx), generated(ctx)
        return {"fid": scores.fid(real.features, gen.features), **_common(ctx, gen)}
    return _guarded(*KEYS["fid"], compute, ctx)


def kid(ctx: "EvalContext") -> dict[str, Any]:
    """Kernel inception distance (unbiased MMD^2, cubic kernel) on evaluator features."""
    def compute(ctx):
        real, gen = reference(ctx), generated(ctx)
        # subsets of half the samples (at most 1000, the usual size) so that the spread means something
        size = max(2, min(1000, real.features.shape[0] // 2, gen.features.shape[0] // 2))
        mean, std = scores.kid(real.features, gen.features, subset_size=size, seed=ctx.seed)
        return {"kid": mean, "kid_std": std, **_common(ctx, gen)}
    return _guarded(*KEYS["kid"], compute, ctx)


def inception(ctx: "EvalContext") -> dict[str, Any]:
    """Inception Score on the evaluator's class probabilities; ``is_data``: the same on real data."""
    def compute(ctx):
        real, gen = reference(ctx), generated(ctx)
        if gen.probs is None or real.probs is None:
            raise DataError(evaluator(ctx).no_classes)
        mean, std = scores.inception_score(gen.probs)
        return {"is": mean, "is_std": std, "is_data": scores.inception_score(real.probs)[0], **_common(ctx, gen)}
    return _guarded(*KEYS["is"], compute, ctx)


def precision_recall(ctx: "EvalContext") -> dict[str, Any]:
    """Precision and recall with k-NN manifolds (k = 3) on evaluator features."""
    def compute(ctx):
        real, gen = reference(ctx), generated(ctx)
        p, r = scores.precision_recall(real.features, gen.features, k=3)
        return {"precision": p, "recall": r, **_common(ctx, gen)}
    return _guarded(*KEYS["pr"], compute, ctx)
