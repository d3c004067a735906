"""Section ``compile``: torch.compile of each family's networks, train and sample."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from unigen import Trainer, TrainerConfig, ops
from unigen.plugin import Dataset, GenerativeModel, UnsupportedOperation

from ..throughput import sync
from .samplers import _dataset_for
from .timing import Context, _build, _error, paired, stats


# -- section: torch.compile -------------------------------------------------------------------------------
def compile_networks(model: nn.Module) -> int:
    """torch.compile every direct child module holding parameters; returns how many."""
    k = 0
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)):
            container: Any = child
            for sub_name, sub in list(child.named_children()):  # containers are iterated, not called
                if type(sub).forward is not nn.Module.forward and any(True for _ in sub.parameters()):
                    container[int(sub_name) if isinstance(child, nn.ModuleList) else sub_name] = torch.compile(sub, dynamic=False)
                    k += 1
        elif type(child).forward is not nn.Module.forward and any(True for _ in child.parameters()):
            setattr(model, name, torch.compile(child, dynamic=False))
            k += 1
    return k


def _train_seconds(model: GenerativeModel, data: Dataset, ctx: "Context", steps: int) -> float:
    defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in model.trainer_defaults.items()}
    cfg = TrainerConfig(**{**defaults, "steps": steps, "batch_size": 64, "seed": 0, "device": ctx.device.type,
                           "log_every": steps})
    trainer = Trainer(model, data, cfg, quiet=True, host=ctx.host)
    started = time.perf_counter()
    trainer.fit()
    sync(ctx.device)
    return time.perf_counter() - started


def section_compile(ctx: "Context") -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: set[str] = set()
    steps, n = 10, 64
    for spec in ctx.host.models.values():
        cls = spec.model_cls
        if cls.family in seen:
            continue
        try:
            data = _dataset_for(cls, ctx)
            torch.manual_seed(0)
            eager = _build(spec.id, data.info, ctx.host, ctx.device)
        except Exception:
            continue  # another model of the family may build
        seen.add(cls.family)
        row: dict[str, Any] = {"model": spec.id}
        ctx.log(f"compile: {spec.id} ({cls.family})")
        try:
            compiled = _build(spec.id, data.info, ctx.host, ctx.device)
            compiled.load_state_dict(eager.state_dict())
            row["compiled_networks"] = compile_networks(compiled)
            started = time.perf_counter()
            _train_seconds(compiled, data, ctx, 2)  # compiles the training graphs
            row["train_compile_s"] = round(time.perf_counter() - started, 2)
            _train_seconds(eager, data, ctx, 2)
            ta, tb, ratios = paired(lambda: _train_seconds(compiled, data, ctx, steps),
                                    lambda: _train_seconds(eager, data, ctx, steps), 3, warmup=0)
            row["train"] = {"compiled_ms_per_step": stats(ta, 1e3 / steps), "eager_ms_per_step": stats(tb, 1e3 / steps),
                            "speedup": round(1 / statistics.median(ratios), 3)}
        except Exception as exc:
            row["train"] = {"error": _error(exc)}
        try:
            compiled.eval(), eager.eval()
            started = time.perf_counter()
            with torch.no_grad():
                ops.sample(compiled, n, None, host=ctx.host)
            row["sample_compile_s"] = round(time.perf_counter() - started, 2)

            def draw(m: GenerativeModel) -> Callable[[], float]:
                def f() -> float:
                    started = time.perf_counter()
                    with torch.no_grad():
                        ops.sample(m, n, None, host=ctx.host)
                    sync(ctx.device)
                    return time.perf_counter() - started
                return f

            ta, tb, ratios = paired(draw(compiled), draw(eager), 3, warmup=1)
            row["sample"] = {"compiled_s": stats(ta), "eager_s": stats(tb), "speedup": round(1 / statistics.median(ratios), 3)}
        except UnsupportedOperation as exc:
            row["sample"] = {"unsupported": str(exc)}
        except Exception as exc:
            row["sample"] = {"error": _error(exc)}
        out[cls.family] = row
    return out


