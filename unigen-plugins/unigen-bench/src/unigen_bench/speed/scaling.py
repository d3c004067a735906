"""Section ``scaling``: time per step against batch size and sampling time against steps."""

from __future__ import annotations

import statistics
import time
from typing import Any

import attrs
import torch

from unigen import Trainer, load_dataset

from ..throughput import sync
from .memory import _probe_model
from .overhead import overhead_config
from .samplers import _time_sampling
from .timing import Context, _build, _error, linear_fit, pick_overhead_models


# -- section: scaling -------------------------------------------------------------------------------------
def section_scaling(ctx: "Context") -> dict[str, Any]:
    out: dict[str, Any] = {}
    conv_id = pick_overhead_models(ctx.host, ctx.overhead_model)
    if conv_id is None:
        return {"error": "no model to train"}
    digits = load_dataset("digits", host=ctx.host)
    try:
        torch.manual_seed(0)
        model = _build(conv_id, digits.info, ctx.host, ctx.device)
        batches = (32, 64, 128, 256, 512)
        steps = 10 if ctx.quick else 30
        ms = []
        for b in batches:
            ctx.log(f"scaling: train batch {b}")
            cfg = overhead_config(model, b, steps, ctx.device.type)
            Trainer(model, digits, attrs.evolve(cfg, steps=2), quiet=True, host=ctx.host).fit()

            def run() -> float:
                t = Trainer(model, digits, cfg, quiet=True, host=ctx.host)
                started = time.perf_counter()
                t.fit()
                sync(ctx.device)
                return time.perf_counter() - started

            ms.append(statistics.median(run() for _ in range(3 if ctx.quick else 5)) * 1e3 / steps)
        out["train"] = {"model": conv_id, "data": "digits", "batch_size": list(batches),
                        "ms_per_step": [round(v, 3) for v in ms], "fit_ms": linear_fit(list(batches), ms),
                        "fit_units": "ms per step = intercept + slope * batch_size"}
    except Exception as exc:
        out["train"] = {"model": conv_id, "error": _error(exc)}
    model_id = _probe_model(ctx.host)
    if model_id is None:
        out["sample"] = {"error": "no multi-step image model installed"}
        return out
    try:
        torch.manual_seed(0)
        model = _build(model_id, digits.info, ctx.host, ctx.device).eval()
        n = 16
        steps_list = (10, 30, 100, 300) if ctx.quick else (10, 30, 100, 300, 1000)
        secs = []
        for k in steps_list:
            ctx.log(f"scaling: sample {model_id} with {k} steps")
            secs.append(statistics.median(_time_sampling(model, n, ctx, 1e9, 3, steps=k)))
        out["sample"] = {"model": model_id, "data": "digits", "n": n, "steps": list(steps_list),
                         "seconds": [round(s, 4) for s in secs],
                         "fit_ms": linear_fit(list(steps_list), [s * 1e3 for s in secs]),
                         "fit_units": "ms per call = intercept + slope * steps"}
    except Exception as exc:
        out["sample"] = {"model": model_id, "error": _error(exc)}
    return out


