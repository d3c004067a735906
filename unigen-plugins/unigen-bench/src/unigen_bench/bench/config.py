"""The bench's settings, its time limits and which models it runs."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from unigen import dataset_spec
from unigen.plugin import GenerativeModel, UnigenError

# --quick: ~25 models in under 10 minutes on 2 CPU cores.
QUICK = {"data": "digits", "minutes": 0.12, "n": 500, "max_sample_steps": 50, "metric_seconds": 10.0}



@attrs.frozen(kw_only=True)
class BenchConfig:
    out: Path = attrs.field(converter=Path)
    models: tuple[str, ...] | None = None  # None: every installed id that accepts the data
    data: str = "digits"
    steps: int | None = None  # training steps per model, or
    minutes: float | None = None  # wall-clock minutes of training per model
    n: int = 1000  # samples (and reference examples) for the sample-based metrics
    seed: int = 0
    batch_size: int | None = None  # None: the model's trainer default
    sample_steps: int | None = None  # None: each model's default
    max_sample_steps: int | None = None  # cap a larger default_steps at this (--quick: 50)
    metric_seconds: float | None = None  # soft time budget of NLL and of sampling; None: no limit
    data_dir: str | None = None
    evaluator: str | None = None  # a TorchScript feature extractor instead of the evaluator CNN
    device: str = "cpu"
    sets: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # "ID.key=value" model-config changes

    @classmethod
    def quick(cls, out: Any, **overrides: Any) -> "BenchConfig":
        values = {**QUICK, **{k: v for k, v in overrides.items() if v is not None}}
        if overrides.get("steps") is not None and overrides.get("minutes") is None:
            values["minutes"] = None  # an explicit --steps replaces the quick time budget
        return cls(out=out, **values)


MIN_STEPS = 10  # a time budget that fits fewer steps of the default config falls back to the example config


class MetricTimeout(UnigenError):
    """A metric ran past its soft time budget (raised by :func:`time_limit`)."""


class TooSlow(UnigenError):
    """The model's default config cannot take enough training steps in the time budget."""


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextmanager
def time_limit(seconds: float | None, what: str):
    """Raise :class:`MetricTimeout` in the main thread after ``seconds`` (SIGALRM; no-op elsewhere).

    The exception is never raised inside an import (a lazy ``import sympy`` cut in half would leave a
    broken module behind for every later model): the alarm is then re-armed for a moment later."""
    usable = seconds is not None and seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        if _importing(frame):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        raise MetricTimeout(f"{what} ran past {seconds:.0f} s")

    assert seconds is not None
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def select_models(host: Any, data: str, ids: tuple[str, ...] | None) -> list[Any]:
    kind = dataset_spec(data, host).kind
    if ids:
        return [host.models[i] for i in ids]  # an unknown id fails before any training
    return [s for s in host.models.values() if kind in s.model_cls.data_kinds]


def sampling_steps(model_cls: type[GenerativeModel], c: BenchConfig) -> tuple[int | None, str]:
    """The steps passed to ``sample`` and how the table shows them."""
    default = model_cls.default_steps
    if c.sample_steps is not None:
        return c.sample_steps, str(c.sample_steps)
    if c.max_sample_steps is not None and default is not None and default > c.max_sample_steps:
        return c.max_sample_steps, f"{c.max_sample_steps} (capped; default {default})"
    return None, "default" if default is None else str(default)


