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

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from . import ops
from .data import Batch, Dataset
from .errors import UnsupportedOperation
from .model import DataInfo, GenerativeModel

SECTIONS = ("trainer_overhead", "samplers", "samples_per_sec", "compile", "memory", "malloc", "scaling")
SAMPLER_SHAPE = (256, 1, 28, 28)
OVERHEAD_TARGET = 1.03


# -- timing --------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    from .api import build_model

    try:
        model = build_model(model_id, info, host=host)
    except Exception:
        if workdir is None:
            raise
        spec = host.models[model_id]
        config = spec.model_cls.example_config(info, workdir)
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


# -- section: trainer overhead ------------------------------------------------------------------------------
class BareLoop:
    """A hand-written torch loop doing what the trainer does for a one-optimizer model: the same
    shuffled batches (a permutation per epoch from the same seed), zero_grad, loss, backward, step."""

    def __init__(self, model: GenerativeModel, data: Dataset, config: Any) -> None:
        from .trainer import OPTIMIZERS

        (self.group, params), = model.parameter_groups().items()
        settings = {"optimizer": config.optimizer, "lr": config.lr, "betas": config.betas,
                    "weight_decay": config.weight_decay}
        settings.update(model.optimizer_settings(self.group))
        name = settings.pop("optimizer")
        if name not in ("adam", "adamw"):
            settings.pop("betas")
        self.make_optimizer = lambda: OPTIMIZERS[name](params, **settings)  # noqa: E731
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
            loss.backward()
            opt.step()
        _sync(self.device)
        return time.perf_counter() - started


def overhead_config(model: GenerativeModel, batch_size: int, steps: int, device: str) -> Any:
    """The trainer's plain path with the model's preferred optimizer settings (no EMA, clipping or
    schedule, which a bare loop would not have either)."""
    from .trainer import TrainerConfig

    keep = ("lr", "betas", "optimizer", "weight_decay")
    defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in model.trainer_defaults.items() if k in keep}
    return TrainerConfig(steps=steps, batch_size=batch_size, seed=0, device=device, **defaults)


def trainer_vs_bare(model: GenerativeModel, data: Dataset, batch_size: int, steps: int, repeats: int,
                    host: Any, device: str = "cpu") -> dict[str, Any]:
    from .trainer import Trainer

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
        _sync(trainer.device)
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
    from .api import load_dataset

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
            _sync(ctx.device)
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
                _sync(ctx.device)
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
            _sync(ctx.device)
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
        _sync(ctx.device)
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
def _dataset_for(model_cls: type, ctx: "Context") -> Dataset:
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
        _sync(ctx.device)
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


# -- section: torch.compile -------------------------------------------------------------------------------
def compile_networks(model: nn.Module) -> int:
    """torch.compile every direct child module holding parameters; returns how many."""
    k = 0
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)):
            for sub_name, sub in list(child.named_children()):  # containers are iterated, not called
                if type(sub).forward is not nn.Module.forward and any(True for _ in sub.parameters()):
                    child[int(sub_name) if isinstance(child, nn.ModuleList) else sub_name] = torch.compile(sub, dynamic=False)
                    k += 1
        elif type(child).forward is not nn.Module.forward and any(True for _ in child.parameters()):
            setattr(model, name, torch.compile(child, dynamic=False))
            k += 1
    return k


def _train_seconds(model: GenerativeModel, data: Dataset, ctx: "Context", steps: int) -> float:
    from .trainer import Trainer, TrainerConfig

    defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in model.trainer_defaults.items()}
    cfg = TrainerConfig(**{**defaults, "steps": steps, "batch_size": 64, "seed": 0, "device": ctx.device.type,
                           "log_every": steps})
    trainer = Trainer(model, data, cfg, quiet=True, host=ctx.host)
    started = time.perf_counter()
    trainer.fit()
    _sync(ctx.device)
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
                    _sync(ctx.device)
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


# -- section: memory --------------------------------------------------------------------------------------
_LAUNCHER = """import json, os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read().decode()[-500:]
_, status, usage = os.wait4(p.pid, 0)
print(json.dumps([usage.ru_maxrss, os.waitstatus_to_exitcode(status), err]))
"""


def _peak_rss_mb(cmd: list[str]) -> tuple[float, int, str]:
    """Run ``cmd``; its own peak RSS in MiB (wait4's figure for that process alone). It is started from
    a small launcher process: Linux carries the RSS high-water mark of the process that forks into the
    child's figure, and this process is large by now."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], capture_output=True, text=True)
    kb, code, err = json.loads(done.stdout.strip().splitlines()[-1])
    return kb / 1024, code, err


def section_memory(ctx: "Context") -> dict[str, Any]:
    model_id = pick_overhead_models(ctx.host, ctx.overhead_model)
    if model_id is None:
        return {"error": "no model to sample"}
    tmp = Path(tempfile.mkdtemp(prefix="unigen-speed-mem-"))
    run = tmp / "run"
    cli = [sys.executable, "-m", "unigen"]
    done = subprocess.run([*cli, "train", model_id, "--data", "digits", "--steps", "2", "--out", str(run), "--quiet"],
                          capture_output=True, text=True)
    if done.returncode:
        return {"model": model_id, "error": done.stderr.strip()[-300:]}
    out: dict[str, Any] = {"model": model_id, "command": "unigen sample RUN --n N --out x.npy", "chunk": 500}
    sizes = (1000, 5000) if ctx.quick else (1000, 10000)
    rows = []
    for n in sizes:
        ctx.log(f"memory: unigen sample --n {n}")
        path = tmp / f"x{n}.npy"
        rss, code, err = _peak_rss_mb([*cli, "sample", str(run), "--n", str(n), "--out", str(path)])
        row: dict[str, Any] = {"n": n, "peak_rss_mb": round(rss, 1), "exit": code}
        if code:
            row["error"] = err.strip()
        else:
            import numpy as np

            arr = np.load(path, mmap_mode="r")
            row["output_mb"] = round(arr.nbytes / 2**20, 2)
            row["shape"] = list(arr.shape)
            del arr
        rows.append(row)
    out["runs"] = rows
    if all("peak_rss_mb" in r and not r.get("error") for r in rows):
        growth = rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
        out["rss_growth_mb"] = round(growth, 1)
        out["output_growth_mb"] = round(rows[1]["output_mb"] - rows[0]["output_mb"], 2)
    # FID over N generated samples: generated and featurised in chunks, so only the (N, F) feature matrix
    # grows with N (the evaluator is trained and cached by the first run, before the measured ones)
    fid_cmd = [*cli, "eval", str(run), "--metrics", "fid", "--json", "--n"]
    subprocess.run([*fid_cmd, "200"], capture_output=True, text=True)
    fid_rows = []
    for n in sizes:
        ctx.log(f"memory: unigen eval --metrics fid --n {n}")
        rss, code, err = _peak_rss_mb([*fid_cmd, str(n)])
        fid_rows.append({"n": n, "peak_rss_mb": round(rss, 1), "exit": code, **({"error": err.strip()} if code else {})})
    out["fid"] = {"command": "unigen eval RUN --metrics fid --n N --json", "runs": fid_rows}
    if not any(r.get("error") for r in fid_rows):
        out["fid"]["rss_growth_mb"] = round(fid_rows[1]["peak_rss_mb"] - fid_rows[0]["peak_rss_mb"], 1)
    return out


# -- section: malloc ---------------------------------------------------------------------------------------
def _probe_model(host: Any) -> str | None:
    """The first installed multi-step image model whose number of network calls grows with steps."""
    info = DataInfo(name="probe", shape=(1, 8, 8), kind="image", levels=17)
    for spec in host.models.values():
        cls = spec.model_cls
        if not cls.default_steps or cls.default_steps <= 1 or "image" not in cls.data_kinds:
            continue
        try:
            model = _build(spec.id, info, host, torch.device("cpu")).eval()
            stamps: list[float] = []
            patch_zero_networks(model, stamps)
            calls = []
            for k in (4, 8):
                stamps.clear()
                with torch.no_grad():
                    ops.sample(model, 2, k, host=host)
                calls.append(len(stamps))
            if calls[1] >= 2 * calls[0] - 1 and calls[0] >= 4:
                return spec.id
        except Exception:
            continue
    return None


def probe(mode: str, model_id: str, conv_id: str) -> dict[str, float]:
    """The workload of the malloc comparison, run in a fresh process: sampling a conv denoiser on
    28x28 (batch 64, 10 steps) and training a conv model on digits (batch 128)."""
    from . import malloc
    from .api import load_dataset
    from .plugins import default_host

    if mode == "mallopt":
        malloc.tune(force=True)
    torch.set_num_threads(1)
    host = default_host()
    ctx_dev = torch.device("cpu")
    info = DataInfo(name="probe-28x28", shape=(1, 28, 28), kind="image", levels=256)
    torch.manual_seed(0)
    model = _build(model_id, info, host, ctx_dev).eval()

    def draw() -> float:
        started = time.perf_counter()
        with torch.no_grad():
            ops.sample(model, 64, 10, host=host)
        return time.perf_counter() - started

    draw()
    sample_s = statistics.median(draw() for _ in range(3))
    digits = load_dataset("digits", host=host)
    conv = _build(conv_id, digits.info, host, ctx_dev)
    from .trainer import Trainer

    cfg = overhead_config(conv, 128, 30, "cpu")
    Trainer(conv, digits, cfg, quiet=True, host=host).fit()

    def train() -> float:
        t = Trainer(conv, digits, cfg, quiet=True, host=host)
        started = time.perf_counter()
        t.fit()
        return time.perf_counter() - started

    train_s = statistics.median(train() for _ in range(3))
    return {"sample_s": sample_s, "train_s": train_s}


def section_malloc(ctx: "Context") -> dict[str, Any]:
    from . import malloc

    model_id = _probe_model(ctx.host)
    conv_id = pick_overhead_models(ctx.host, ctx.overhead_model)
    if model_id is None or conv_id is None:
        return {"error": "no multi-step image model or conv model installed"}
    base = {k: v for k, v in os.environ.items() if k not in malloc.ENV_VARS and k != malloc.ENV_SWITCH}
    modes = {"system": base, "env": {**base, **malloc.ENV_VARS}, "mallopt": base}
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    rounds = 2 if ctx.quick else 4
    for i in range(rounds):
        order = list(modes) if i % 2 == 0 else list(reversed(modes))
        for mode in order:
            ctx.log(f"malloc probe {i + 1}/{rounds}: {mode}")
            done = subprocess.run([sys.executable, "-m", "unigen.speed", "--probe", mode, model_id, conv_id],
                                  capture_output=True, text=True, env=modes[mode])
            if done.returncode:
                return {"error": f"probe {mode} failed: {done.stderr.strip()[-300:]}"}
            results[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"sampled": model_id, "trained": conv_id, "rounds": rounds,
                           "settings": malloc.ENV_VARS, "cli_default": "mallopt (unigen.malloc.tune)"}
    for key in ("sample_s", "train_s"):
        row: dict[str, Any] = {m: stats([r[key] for r in results[m]]) for m in modes}
        for m in ("env", "mallopt"):
            # paired by round: rounds ran the three modes back to back
            row[f"speedup_{m}"] = round(statistics.median(
                s[key] / r[key] for s, r in zip(results["system"], results[m])), 3)
        out[key] = row
    return out


# -- section: scaling -------------------------------------------------------------------------------------
def section_scaling(ctx: "Context") -> dict[str, Any]:
    from .api import load_dataset
    from .trainer import Trainer

    out: dict[str, Any] = {}
    conv_id = pick_overhead_models(ctx.host, ctx.overhead_model)
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
                _sync(ctx.device)
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


# -- the report -------------------------------------------------------------------------------------------
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
    from . import malloc

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


# -- text output -------------------------------------------------------------------------------------------
def _fmt(s: Any, unit: str = "") -> str:
    if not isinstance(s, dict) or s.get("median") is None:
        return "-"
    return f"{s['median']:.4g}{unit} [{s['min']:.3g}..{s['max']:.3g}]"


def format_report(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [f"unigen speed  {m['time']}  torch {m['torch']}  device {m['device']}  threads {m['threads']}  "
             f"cpus {m['cpus']}  load {m['loadavg']} -> {m.get('loadavg_end')}  malloc {m['malloc']}"
             f"{'  (quick)' if m['quick'] else ''}", "", "median [min..max] of repeats; ratios taken pair by pair"]
    to = r.get("trainer_overhead", {})
    if to:
        lines += ["", "trainer overhead (trainer / bare loop, same model, data and batches; target <= 1.03)"]
    if "error" in to:
        lines.append(f"  error: {to['error']}")
    for label in ("small", "conv"):
        row = to.get(label)
        if not row:
            continue
        if "error" in row:
            lines.append(f"  {label:6s} {row.get('model')}: error: {row['error']}")
            continue
        lines.append(f"  {label:6s} {row['model']} on {row['data']}, batch {row['batch_size']}: ratio "
                     f"{_fmt(row['ratio'])} {'ok' if row['ok'] else 'ABOVE TARGET'} (CPU time "
                     f"{_fmt(row.get('cpu_ratio'))});  trainer - bare "
                     f"{_fmt(row['extra_us_per_step'], ' us')};  trainer "
                     f"{_fmt(row['trainer_ms_per_step'], ' ms')}  bare {_fmt(row['bare_ms_per_step'], ' ms')} per step")
    sm = r.get("samplers", {})
    if "core" in sm or "models" in sm:
        lines += ["", f"sampler cost per step, zero network, batch {tuple(sm.get('shape', ()))}"]
        for group in ("core", "models"):
            for k, row in sm.get(group, {}).items():
                if "error" in row:
                    lines.append(f"  {group:6s} {k:24s} error: {row['error']}")
                else:
                    vs = f"  x{row['vs_diffusers_ddim']} of diffusers DDIM" if "vs_diffusers_ddim" in row else ""
                    lines.append(f"  {group:6s} {k:24s} {_fmt(row['step_ms'], ' ms')}  ({row['calls']} calls for "
                                 f"{row['steps']} steps){vs}")
        d = sm.get("diffusers", {})
        if "error" in d:
            lines.append(f"  diffusers: {d['error']}")
        for k, row in d.items():
            if isinstance(row, dict) and "step_ms" in row:
                lines.append(f"  diffusers {d['version']} {k}.step: {_fmt(row['step_ms'], ' ms')}")
        if "noise_draw" in sm:
            lines.append(f"  drawing z ~ N(0, I) alone (torch's generator; the floor of a step that draws noise): "
                         f"{_fmt(sm['noise_draw']['step_ms'], ' ms')}")
    sps = r.get("samples_per_sec", {})
    if len(sps) > 1:
        lines += ["", f"samples/sec at each model's default steps ({sps.get('n_per_call')} per call, untrained weights)"]
        for k, row in sps.items():
            if not isinstance(row, dict):
                continue
            if "samples_per_sec" in row:
                lines.append(f"  {k:24s} {row['family']:14s} steps {str(row['steps']):5s} "
                             f"{_fmt(row['samples_per_sec'])} on {row['data']}")
            elif "unsupported" in row or "error" in row:
                lines.append(f"  {k:24s} {row.get('family', ''):14s} {row.get('unsupported') or 'error: ' + row['error']}")
    comp = r.get("compile", {})
    if "skipped" in comp:
        lines += ["", f"compile: skipped ({comp['skipped']})"]
    elif comp:
        lines += ["", "torch.compile speedup (eager time / compiled time; >1 is a gain)"]
        for fam, row in comp.items():
            if not isinstance(row, dict) or "model" not in row:
                continue
            tr, sa = row.get("train", {}), row.get("sample", {})
            lines.append(f"  {fam:14s} {row['model']:20s} train {tr.get('speedup', tr.get('error', '-'))}  "
                         f"sample {sa.get('speedup', sa.get('error', sa.get('unsupported', '-')))}")
    mem = r.get("memory", {})
    if mem:
        lines.append("")
        for block, title in ((mem, f"{mem.get('command', '')} ({mem.get('model', '')})"),
                             (mem.get("fid"), (mem.get("fid") or {}).get("command", ""))):
            if not block:
                continue
            lines.append(f"memory: {title}")
            for row in block.get("runs", []):
                output = f"  output {row.get('output_mb', '-')} MiB" if block is mem else ""
                lines.append(f"  n={row['n']:6d}  peak RSS {row['peak_rss_mb']} MiB{output}"
                             f"{'  error: ' + row['error'] if row.get('error') else ''}")
            if "error" in block:
                lines.append(f"  error: {block['error']}")
            if "rss_growth_mb" in block:
                more = f" for {block['output_growth_mb']} MiB more output" if "output_growth_mb" in block else ""
                lines.append(f"  peak RSS growth {block['rss_growth_mb']} MiB{more}")
    mal = r.get("malloc", {})
    if mal:
        lines += ["", "malloc (subprocess probes; speedup = system time / setting time, paired by round)"]
        if "error" in mal:
            lines.append(f"  error: {mal['error']}")
        for key in ("sample_s", "train_s"):
            row = mal.get(key)
            if row:
                lines.append(f"  {key:9s} system {_fmt(row['system'], ' s')}  env {_fmt(row['env'], ' s')}  "
                             f"mallopt {_fmt(row['mallopt'], ' s')}  speedup env x{row['speedup_env']} "
                             f"mallopt x{row['speedup_mallopt']}")
    sc = r.get("scaling", {})
    if sc:
        lines += ["", "scaling (least squares)"]
        tr, sa = sc.get("train", {}), sc.get("sample", {})
        if "fit_ms" in tr:
            lines.append(f"  train {tr['model']}: ms/step {tr['ms_per_step']} at batch {tr['batch_size']}: "
                         f"{tr['fit_ms']['intercept']} + {tr['fit_ms']['slope']} * B ms (R^2 {tr['fit_ms']['r2']})")
        elif tr:
            lines.append(f"  train: error: {tr.get('error')}")
        if "fit_ms" in sa:
            lines.append(f"  sample {sa['model']} (n={sa['n']}): s {sa['seconds']} at steps {sa['steps']}: "
                         f"{sa['fit_ms']['intercept']} + {sa['fit_ms']['slope']} * steps ms (R^2 {sa['fit_ms']['r2']})")
        elif sa:
            lines.append(f"  sample: error: {sa.get('error')}")
    lines += ["", f"total {m.get('seconds')} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m unigen.speed --probe MODE MODEL CONV``: one malloc probe (used by the report)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 4 and argv[0] == "--probe":
        print(json.dumps(probe(argv[1], argv[2], argv[3])))
        return 0
    print("usage: unigen speed [--json] [--quick] [--compile]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
