"""Throughput: samples per second and training steps per second.

Each measurement runs ``warmup`` untimed repeats first (allocator, lazy initialisation, caches) and
then reports the median of ``repeats`` timed ones, so one slow repeat (another process, a page
fault storm) does not move the number. CUDA work is synchronised before the clock is read.
Training is timed through the generic :class:`unigen.Trainer` on a copy of the model, so the
evaluated weights are not changed and what is timed is what ``unigen train`` does.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from unigen import Trainer, TrainerConfig, ops
from unigen import config as cfg
from unigen.plugin import UnsupportedOperation

if TYPE_CHECKING:
    from unigen import metrics


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5, device: Any = "cpu") -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sampling_throughput(model: Any, batch: int = 100, steps: int | None = None, *, warmup: int = 1,
                        repeats: int = 3, host: Any = None) -> dict[str, Any]:
    """Samples per second drawing ``batch`` samples per call."""
    def draw() -> None:
        with torch.no_grad():
            ops.sample(model, batch, steps, host=host)

    seconds = median_seconds(draw, warmup=warmup, repeats=repeats, device=model.device)
    return {"samples_per_sec": batch / seconds, "sampling_batch": batch, "sampling_steps": steps}


def samples_per_sec_from_chunks(chunks: tuple[tuple[int, float], ...]) -> float | None:
    """Samples/sec from timed sampling chunks (samples, seconds): the first chunk is the warm-up and
    the median rate of the others is reported (the first alone when there is only one)."""
    if not chunks:
        return None
    timed = chunks[1:] or chunks
    return statistics.median(k / max(s, 1e-12) for k, s in timed)


def training_throughput(model: Any, data: Any, trainer_config: Any, *, steps: int = 5, warmup: int = 2,
                        repeats: int = 3, host: Any = None) -> dict[str, Any]:
    """Training steps per second of the generic trainer on a copy of ``model``."""
    import attrs

    clone = copy.deepcopy(model)
    clone.model_id = model.model_id
    cfg = attrs.evolve(trainer_config, steps=warmup, checkpoint_every=0, log_every=max(warmup, 1))
    if warmup:
        Trainer(clone, data, cfg, quiet=True, host=host).fit()
    cfg = attrs.evolve(cfg, steps=steps, log_every=steps)
    times = []
    for _ in range(repeats):
        trainer = Trainer(clone, data, cfg, quiet=True, host=host)
        started = time.perf_counter()
        trainer.fit()
        sync(trainer.device)
        times.append(time.perf_counter() - started)
    del clone
    return {"train_steps_per_sec": steps / statistics.median(times), "train_batch_size": cfg.batch_size}


def throughput(ctx: "metrics.EvalContext") -> dict[str, Any]:
    """The ``throughput`` metric: sampling (batch ``ctx.batch_size``) and training (the run's trainer settings)."""
    import attrs


    out: dict[str, Any] = {}
    try:
        out.update(sampling_throughput(ctx.model, min(ctx.batch_size, ctx.n), ctx.steps, host=ctx.host))
    except UnsupportedOperation as exc:
        out.update({"samples_per_sec": None, "samples_per_sec_reason": str(exc)})
    try:
        trainer_cfg = cfg.from_dict(TrainerConfig, dict(ctx.record.get("trainer", {})), what="trainer config")
        trainer_cfg = attrs.evolve(trainer_cfg, device=ctx.model.device.type)  # type: ignore[call-arg]  # TrainerConfig has its own __init__, which mypy's attrs support does not follow
        was_training = ctx.model.training
        out.update(training_throughput(ctx.model, ctx.split("train"), trainer_cfg, host=ctx.host))
        ctx.model.train(was_training)
    except UnsupportedOperation as exc:
        out.update({"train_steps_per_sec": None, "train_steps_per_sec_reason": str(exc)})
    return out
