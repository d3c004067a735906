"""Timing helpers of the speed report: statistics, paired ratios, fits, models built from the registry,
networks patched to cost nothing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from unigen import build_model, testing
from unigen.plugin import DataInfo, Dataset, GenerativeModel

SECTIONS = ("trainer_overhead", "samplers", "samples_per_sec", "compile", "memory", "malloc", "scaling")
SAMPLER_SHAPE = (256, 1, 28, 28)
OVERHEAD_TARGET = 1.03


# -- timing --------------------------------------------------------------------------------------------
def stats(values: Iterable[float], scale: float = 1.0, digits: int = 4) -> dict[str, Any]:
    """Median, min, max and interquartile range of ``values`` (times ``scale``)."""
    xs = sorted(v * scale for v in values)
    if not xs:
        return {"median": None, "n": 0}
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    r = lambda v: float(f"{v:.{digits}g}")  # noqa: E731
    return {"median": r(statistics.median(xs)), "min": r(xs[0]), "max": r(xs[-1]), "iqr": r(q[2] - q[0]), "n": len(xs)}


def paired(a: Callable[[], float], b: Callable[[], float], repeats: int, warmup: int = 1) -> tuple[list, list, list]:
    """Run ``a`` and ``b`` (each returns the seconds of its timed region) ``repeats`` times in
    alternating order after ``warmup`` untimed pairs; return their times and the per-pair ratios a/b."""
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for i in range(repeats):
        if i % 2:
            y, x = b(), a()
        else:
            x, y = a(), b()
        ta.append(x)
        tb.append(y)
    return ta, tb, [x / y for x, y in zip(ta, tb)]


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares y = intercept + slope x, with R^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1e-30
    return {"slope": float(f"{slope:.4g}"), "intercept": float(f"{intercept:.4g}"), "r2": round(1 - ss_res / ss_tot, 4)}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


# -- models from the registry ----------------------------------------------------------------------------
def vector_view(data: Dataset) -> Dataset:
    """The same examples flattened to vectors (digits as 64-vectors), for MLP models."""
    info = attrs.evolve(data.info, name=f"{data.info.name}-vectors", shape=(data.info.dim,), kind="vector")
    return Dataset(info=info, x=data.x.flatten(1).contiguous(), y=data.y, text=data.text, captions=data.captions)


def _build(model_id: str, info: DataInfo, host: Any, device: torch.device, workdir: Path | None = None) -> GenerativeModel:
    """The model's default config; a model whose default config cannot be built (it needs another
    trained run) falls back to its ``example_config`` when ``workdir`` is given."""
    try:
        model = build_model(model_id, info, host=host)
    except Exception:
        if workdir is None:
            raise
        spec = host.models[model_id]
        config = testing.example_config(spec.model_cls, info, workdir, host=host)
        model = build_model(model_id, info, config, host=host)
    return model.to(device)


def _single_group(model: GenerativeModel) -> bool:
    return len(model.parameter_groups()) == 1


def pick_overhead_models(host: Any, preferred: str | None = None) -> str | None:
    """The model for the overhead figures: ``preferred`` when installed, else the first installed id
    that takes both vectors and images and trains with one optimizer."""
    if preferred and preferred in host.models:
        return preferred
    for spec in host.models.values():
        kinds = spec.model_cls.data_kinds
        if "image" in kinds and "vector" in kinds and spec.model_cls.default_steps is None:
            return spec.id
    return None


class _Zeros(nn.Module):
    """Stands in for a network: records the time of each call and returns zeros of the shape the real
    network returned for inputs of that shape (computed once, on the first call)."""

    def __init__(self, inner: nn.Module, stamps: list[float]) -> None:
        super().__init__()
        self.inner = inner
        self.stamps = stamps
        self.cache: dict[Any, Any] = {}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.stamps.append(time.perf_counter())
        key = tuple((tuple(a.shape), a.dtype) if isinstance(a, Tensor) else type(a) for a in args)
        out = self.cache.get(key)
        if out is None:
            with torch.no_grad():
                real = self.inner(*args, **kwargs)
            out = _zeros_like(real)
            self.cache[key] = out
        return out


def _zeros_like(value: Any) -> Any:
    if isinstance(value, Tensor):
        return torch.zeros_like(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_zeros_like(v) for v in value)
    return value


def patch_zero_networks(model: nn.Module, stamps: list[float]) -> list[_Zeros]:
    """Replace every direct child module holding parameters by :class:`_Zeros`."""
    patched = []
    for name, child in list(model.named_children()):
        if any(True for _ in child.parameters()):
            z = _Zeros(child, stamps)
            setattr(model, name, z)
            patched.append(z)
    return patched


def step_cost(stamps: list[float], steps: int | None) -> dict[str, Any]:
    """Seconds per network call and per step from the call times of one sampling pass."""
    calls = len(stamps)
    if calls < 2:
        return {"calls": calls}
    per_call = (stamps[-1] - stamps[0]) / (calls - 1)
    per_step = per_call * calls / steps if steps else per_call
    return {"calls": calls, "per_call": per_call, "per_step": per_step}


@attrs.define
class Context:
    host: Any
    quick: bool = False
    compile: bool = False
    device: torch.device = torch.device("cpu")
    overhead_model: str | None = "vae"
    log: Callable[[str], None] = lambda msg: None
    _datasets: dict[str, Dataset] = attrs.field(factory=dict)

    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            self._datasets[name] = self.host.datasets[name].load("train", None)
        return self._datasets[name]
