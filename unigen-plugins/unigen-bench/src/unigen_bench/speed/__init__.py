"""``unigen speed``: the project's own benchmark, measured in one run.

Every figure is taken after warm-up as the median of repeats, with the spread (min, max and
interquartile range). A ratio is computed pair by pair: the two things compared are run one after
the other, in alternating order, and the ratio of each pair is taken before the median, so that load
from other processes, which drifts over seconds, cancels in the ratio.

Sections (each returns a JSON-able dict; a model or a section that fails is recorded with its error
and the others still run):

``trainer_overhead``  generic :class:`unigen.Trainer` / a bare hand-written torch loop doing the same
                      math (same model, data, batches, optimizer) in the same process; a small MLP model
                      on digits as 64-vectors and a conv model on digits, batch 128. Target <= 1.03.
``samplers``          cost of one sampler step with a zero-cost network (it returns zeros) on a
                      (256, 1, 28, 28) batch: every registered core sampler, and every installed
                      multi-step image model sampled with its networks patched to return zeros (the
                      family's own step kernels, called generically), against diffusers' schedulers
                      when diffusers is importable. The time of a step is the median interval between
                      consecutive network calls, so fixed costs (the first draw, decoding) are excluded.
``samples_per_sec``   every installed model at its default number of sampling steps (untrained
                      weights: the speed of a network does not depend on its values).
``compile``           torch.compile of each family's networks (one model per family), train and sample.
``memory``            peak RSS of ``unigen sample RUN --n N --out x.npy`` and of ``unigen eval RUN
                      --metrics fid --n N`` in a subprocess, for two N (1,000 and 10,000).
``malloc``            glibc malloc as it is, with ``MALLOC_*`` environment thresholds, and with
                      ``mallopt`` at start (what the ``unigen`` command does): subprocess probes.
``scaling``           trainer time per step against batch size and sampling time against steps, with
                      the least-squares slope and intercept.

Which model stands for "small", "conv" or "multi-step" is chosen from the registry by what it is (its
data kinds, its default steps, its parameter groups), never by importing a family.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from unigen import malloc

from .compile import section_compile
from .memory import section_malloc, section_memory
from .overhead import section_trainer_overhead
from .report import format_report
from .samplers import section_samplers, section_samples_per_sec
from .scaling import section_scaling
from .timing import SECTIONS, Context, _error

# -- the report -------------------------------------------------------------------------------------------
RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "trainer_overhead": section_trainer_overhead,
    "samplers": section_samplers,
    "samples_per_sec": section_samples_per_sec,
    "compile": section_compile,
    "memory": section_memory,
    "malloc": section_malloc,
    "scaling": section_scaling,
}


def _meta(ctx: Context) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": ctx.quick, "compile": ctx.compile,
            "device": str(ctx.device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "loadavg": [round(v, 2) for v in load] if load else None,
            "malloc": malloc.describe(), "python": sys.version.split()[0]}


def run(ctx: Context, sections: Iterable[str] = SECTIONS) -> dict[str, Any]:
    report: dict[str, Any] = {"meta": _meta(ctx)}
    started = time.perf_counter()
    for name in sections:
        if name == "compile" and not ctx.compile:
            report[name] = {"skipped": "pass --compile"}
            continue
        t = time.perf_counter()
        try:
            report[name] = RUNNERS[name](ctx)
        except Exception as exc:  # a section that fails must not hide the others
            report[name] = {"error": _error(exc)}
        report[name]["section_seconds"] = round(time.perf_counter() - t, 1)
    report["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    report["meta"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return report


__all__ = ["SECTIONS", "Context", "format_report", "run"]
