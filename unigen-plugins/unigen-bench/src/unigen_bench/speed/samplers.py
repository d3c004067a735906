"""Sections ``samplers`` (cost of one sampler step) and ``samples_per_sec``."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from unigen import ops
from unigen.plugin import DataInfo, Dataset, GenerativeModel, UnsupportedOperation

from ..throughput import sync
from .timing import SAMPLER_SHAPE, Context, _build, _error, patch_zero_networks, stats, step_cost


# -- section: sampler steps ------------------------------------------------------------------------------
def _time_passes(run: Callable[[], list[float]], steps: int | None, repeats: int) -> dict[str, Any]:
    run()  # warm-up (first real network call, allocator)
    costs = [step_cost(run(), steps) for _ in range(repeats)]
    per_step = [c["per_step"] for c in costs if "per_step" in c]
    return {"step_ms": stats(per_step, 1e3), "calls": costs[-1]["calls"], "steps": steps}


def core_sampler_steps(ctx: "Context", shape: tuple[int, ...], steps: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    x = torch.randn(shape, device=ctx.device)
    zeros = torch.zeros(shape, device=ctx.device)
    stamps: list[float] = []

    def ode(x: Tensor, t: Tensor) -> Tensor:
        stamps.append(time.perf_counter())
        return zeros

    def sde(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        stamps.append(time.perf_counter())
        return zeros, zeros

    for spec in ctx.host.samplers.values():
        def run(spec: Any = spec) -> list[float]:
            stamps.clear()
            spec.solve(ode if spec.kind == "ode" else sde, x, steps)
            sync(ctx.device)
            return list(stamps)
        try:
            out[spec.id] = {"kind": spec.kind, "order": spec.order, **_time_passes(run, steps, repeats)}
        except Exception as exc:
            out[spec.id] = {"error": _error(exc)}
    return out


def model_sampler_steps(ctx: "Context", shape: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Every installed multi-step image model, sampled with zero networks at its default steps."""
    out: dict[str, Any] = {}
    info = DataInfo(name="speed-28x28", shape=tuple(shape[1:]), kind="image", levels=256)
    for spec in ctx.host.models.values():
        cls = spec.model_cls
        if not cls.default_steps or cls.default_steps <= 1 or "image" not in cls.data_kinds:
            continue
        try:
            torch.manual_seed(0)
            model = _build(spec.id, info, ctx.host, ctx.device).eval()
            stamps: list[float] = []
            patched = patch_zero_networks(model, stamps)
            if not patched:
                raise ValueError("no network to patch")

            def run(model: GenerativeModel = model, stamps: list[float] = stamps) -> list[float]:
                stamps.clear()
                with torch.no_grad():
                    ops.sample(model, shape[0], None, host=ctx.host)
                sync(ctx.device)
                return list(stamps)

            res = _time_passes(run, cls.default_steps, repeats)
            intact = all(bool((v == 0).all()) for z in patched for v in _tensors(z.cache))
            out[spec.id] = {"family": cls.family, **res, **({} if intact else {"warning": "sampler wrote into the network output"})}
        except Exception as exc:
            out[spec.id] = {"family": cls.family, "error": _error(exc)}
    return out


def _tensors(value: Any) -> Iterable[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)


def diffusers_steps(ctx: "Context", shape: tuple[int, ...], repeats: int) -> dict[str, Any]:
    try:
        import diffusers
        from diffusers import DDIMScheduler, DDPMScheduler
    except Exception as exc:  # ImportError, or a diffusers that fails to import beside this torch
        return {"error": "diffusers not installed" if isinstance(exc, ImportError) else _error(exc)}
    out: dict[str, Any] = {"version": diffusers.__version__}
    x0 = torch.randn(shape, device=ctx.device)
    eps = torch.zeros(shape, device=ctx.device)
    for name, cls, steps in (("DDIMScheduler", DDIMScheduler, 50), ("DDPMScheduler", DDPMScheduler, 1000)):
        sched = cls(num_train_timesteps=1000)
        sched.set_timesteps(steps)

        def run(sched: Any = sched) -> list[float]:
            stamps: list[float] = []
            x = x0.clone()
            gen = torch.Generator(device=ctx.device).manual_seed(0)
            for t in sched.timesteps:
                stamps.append(time.perf_counter())
                x = sched.step(eps, t, x, generator=gen).prev_sample
            sync(ctx.device)
            stamps.append(time.perf_counter())
            return stamps

        costs = [step_cost(run(), None) for _ in range(repeats + 1)][1:]
        out[name] = {"step_ms": stats([c["per_call"] for c in costs], 1e3), "steps": steps}
    return out


def noise_draw(ctx: "Context", shape: tuple[int, ...], repeats: int, per_repeat: int = 20) -> dict[str, Any]:
    """The time of drawing z ~ N(0, I) of ``shape`` in place (torch's generator): the floor of every step
    that draws noise (ancestral DDPM, Euler-Maruyama, diffusers' DDPMScheduler), whatever its arithmetic."""
    z = torch.empty(shape, device=ctx.device)
    z.normal_()

    def draw() -> float:
        started = time.perf_counter()
        for _ in range(per_repeat):
            z.normal_()
        sync(ctx.device)
        return (time.perf_counter() - started) / per_repeat

    return {"step_ms": stats([draw() for _ in range(repeats)], 1e3)}


def section_samplers(ctx: "Context") -> dict[str, Any]:
    shape = SAMPLER_SHAPE
    repeats = 5 if ctx.quick else 11
    ctx.log(f"sampler steps on {shape} with a zero network")
    res: dict[str, Any] = {"shape": list(shape)}
    res["core"] = core_sampler_steps(ctx, shape, 50, repeats)
    res["models"] = model_sampler_steps(ctx, shape, repeats)
    res["diffusers"] = diffusers_steps(ctx, shape, repeats)
    res["noise_draw"] = noise_draw(ctx, shape, repeats)
    ref = res["diffusers"].get("DDIMScheduler", {}).get("step_ms", {}).get("median")
    if ref:
        for group in ("core", "models"):
            for r in res[group].values():
                ms = r.get("step_ms", {}).get("median")
                if ms:
                    r["vs_diffusers_ddim"] = round(ms / ref, 3)
    return res


# -- section: samples per second ---------------------------------------------------------------------------
def _dataset_for(model_cls: type[GenerativeModel], ctx: "Context") -> Dataset:
    """digits for image models, moons for vector ones, else the first registered dataset of a kind
    the model takes."""

    kinds = model_cls.data_kinds
    for name, kind in (("digits", "image"), ("moons", "vector")):
        if kind in kinds and name in ctx.host.datasets:
            return ctx.dataset(name)
    for spec in ctx.host.datasets.values():
        if spec.kind in kinds:
            return ctx.dataset(spec.id)
    raise ValueError(f"no installed dataset of kind {'/'.join(kinds)}")


def _time_sampling(model: GenerativeModel, n: int, ctx: "Context", budget: float, repeats: int,
                   steps: int | None = None) -> list[float]:
    def draw() -> float:
        started = time.perf_counter()
        with torch.no_grad():
            ops.sample(model, n, steps, host=ctx.host)
        sync(ctx.device)
        return time.perf_counter() - started

    first = draw()  # warm-up
    k = max(1, min(repeats, int(budget / max(first, 1e-6))))
    return [draw() for _ in range(k)]


def section_samples_per_sec(ctx: "Context") -> dict[str, Any]:
    n = 64 if ctx.quick else 256
    out: dict[str, Any] = {"n_per_call": n}
    workdir = Path(tempfile.mkdtemp(prefix="unigen-speed-"))
    for spec in ctx.host.models.values():
        cls = spec.model_cls
        try:
            data = _dataset_for(cls, ctx)
            torch.manual_seed(0)
            model = _build(spec.id, data.info, ctx.host, ctx.device, None if ctx.quick else workdir / spec.id).eval()
            ctx.log(f"samples/sec: {spec.id}")
            times = _time_sampling(model, n, ctx, 6.0 if ctx.quick else 20.0, 3 if ctx.quick else 5)
            out[spec.id] = {"family": cls.family, "data": data.info.name, "steps": cls.default_steps,
                            "samples_per_sec": stats([n / t for t in times], digits=4), "seconds_per_call": stats(times)}
        except UnsupportedOperation as exc:
            out[spec.id] = {"family": cls.family, "unsupported": str(exc)}
        except Exception as exc:
            out[spec.id] = {"family": cls.family, "error": _error(exc)}
    return out


