"""Section ``trainer_overhead``: the generic trainer against a bare torch loop doing the same math."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import unigen
from unigen import Trainer, TrainerConfig, load_dataset
from unigen.plugin import Batch, Dataset, GenerativeModel

from ..throughput import sync
from .timing import (
    OVERHEAD_TARGET,
    Context,
    _build,
    _error,
    _single_group,
    paired,
    pick_overhead_models,
    stats,
    vector_view,
)


# -- section: trainer overhead ------------------------------------------------------------------------------
class BareLoop:
    """A hand-written torch loop doing what the trainer does for a one-optimizer model: the same
    shuffled batches (a permutation per epoch from the same seed), zero_grad, loss, backward, step."""

    def __init__(self, model: GenerativeModel, data: Dataset, config: Any) -> None:
        (self.group, params), = model.parameter_groups().items()
        settings = {"optimizer": config.optimizer, "lr": config.lr, "betas": config.betas,
                    "weight_decay": config.weight_decay}
        settings.update(model.optimizer_settings(self.group))
        name = settings.pop("optimizer")
        if name not in ("adam", "adamw"):
            settings.pop("betas")
        self.make_optimizer = lambda: unigen.trainer.OPTIMIZERS[name](params, **settings)  # noqa: E731
        self.model, self.config = model, config
        device = torch.device(config.device)
        self.device = device
        self.x = data.x.to(device)
        self.y = None if data.y is None else data.y.to(device)

    def run(self, steps: int) -> float:
        model, c, x, y = self.model, self.config, self.x, self.y
        opt = self.make_optimizer()
        B, n = c.batch_size, x.shape[0]
        per_epoch = n // B
        model.train()
        started = time.perf_counter()
        perm, pos, epoch = None, 0, -1
        for _ in range(steps):
            if perm is None or pos == per_epoch:
                epoch, pos = epoch + 1, 0
                g = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)
                perm = torch.randperm(n, generator=g).to(self.device)
            idx = perm[pos * B:(pos + 1) * B]
            pos += 1
            batch = Batch(x.index_select(0, idx), None if y is None else y.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss = model.loss(batch, self.group)
            assert isinstance(loss, torch.Tensor)  # one parameter group: one scalar
            loss.backward()
            opt.step()
        sync(self.device)
        return time.perf_counter() - started


def overhead_config(model: GenerativeModel, batch_size: int, steps: int, device: str) -> Any:
    """The trainer's plain path with the model's preferred optimizer settings (no EMA, clipping or
    schedule, which a bare loop would not have either)."""
    keep = ("lr", "betas", "optimizer", "weight_decay")
    defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in model.trainer_defaults.items() if k in keep}
    plain = {"ema_decay": 0.0, "grad_clip": 0.0, "lr_schedule": "constant", "warmup_steps": 0}
    return TrainerConfig(steps=steps, batch_size=batch_size, seed=0, device=device, **{**plain, **defaults})


def trainer_vs_bare(model: GenerativeModel, data: Dataset, batch_size: int, steps: int, repeats: int,
                    host: Any, device: str = "cpu") -> dict[str, Any]:
    config = overhead_config(model, batch_size, steps, device)
    bare = BareLoop(model, data, config)
    cpu: dict[str, list[float]] = {"trainer": [], "bare": []}

    def timed(name: str, fn: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:  # wall-clock seconds; this process's CPU seconds go to cpu[name]
            c0 = time.process_time()
            wall = fn()
            cpu[name].append(time.process_time() - c0)
            return wall
        return run

    def trainer_run() -> float:
        trainer = Trainer(model, data, config, quiet=True, host=host)
        started = time.perf_counter()
        trainer.fit()
        sync(trainer.device)
        return time.perf_counter() - started

    ta, tb, ratios = paired(timed("trainer", trainer_run), timed("bare", lambda: bare.run(steps)), repeats)
    # CPU time is not stretched by other processes taking the cores (the trainer's construction, a few
    # ms, is inside it, which only counts against the trainer): the steadier figure on a shared machine
    n_warm = len(cpu["trainer"]) - repeats
    cpu_ratios = [x / y for x, y in zip(cpu["trainer"][n_warm:], cpu["bare"][n_warm:]) if y > 0]
    return {"ratio": stats(ratios), "cpu_ratio": stats(cpu_ratios),
            "extra_us_per_step": stats([a - b for a, b in zip(ta, tb)], 1e6 / steps),
            "trainer_ms_per_step": stats(ta, 1e3 / steps),
            "bare_ms_per_step": stats(tb, 1e3 / steps), "batch_size": batch_size, "steps_per_repeat": steps,
            "target": OVERHEAD_TARGET, "ok": statistics.median(ratios) <= OVERHEAD_TARGET}


def section_trainer_overhead(ctx: "Context") -> dict[str, Any]:
    model_id = pick_overhead_models(ctx.host, ctx.overhead_model)
    if model_id is None:
        return {"error": "no installed model takes both vectors and images"}
    digits = load_dataset("digits", host=ctx.host)
    out: dict[str, Any] = {}
    for label, data in (("small", vector_view(digits)), ("conv", digits)):
        try:
            torch.manual_seed(0)
            model = _build(model_id, data.info, ctx.host, ctx.device)
            if not _single_group(model):
                raise ValueError(f"{model_id} has several parameter groups; the bare loop covers one")
            nparams = sum(p.numel() for p in model.parameters())
            ctx.log(f"trainer overhead: {model_id} on {data.info.name} ({nparams} parameters)")
            # many short pairs: the median of per-pair ratios resolves a few per cent on a busy machine
            steps = 30 if ctx.quick else 50
            res = trainer_vs_bare(model, data, 128, steps, 15 if ctx.quick else 41, ctx.host, ctx.device.type)
            out[label] = {"model": model_id, "data": data.info.name, "parameters": nparams, **res}
        except Exception as exc:
            out[label] = {"model": model_id, "error": _error(exc)}
    return out


