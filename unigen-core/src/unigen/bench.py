"""``unigen bench``: every requested model trained on one dataset with the same budget, then
measured with the same metrics, side by side.

For each model (default: every installed id whose ``data_kinds`` accept the dataset) the bench

1. trains it with the generic :class:`unigen.Trainer` for ``steps`` steps or ``minutes`` of wall
   clock (run directory ``OUT/runs/<id>``, so ``unigen eval``/``sample`` work on it afterwards);
2. computes its loss on one fixed batch (the unified loss comparison: every model's own training
   objective on the same examples, sorted);
3. evaluates NLL in bits/dim (exact, bound or estimate), FID, KID, IS, precision and recall on the
   dataset's evaluator features, samples/sec (the first sampling chunk is the warm-up, the median of
   the others is reported) and training steps/sec (warm-up, median of repeats);
4. saves a sample grid, and for a model with a latent space (``latent(x)``) a PCA scatter of the
   latent codes of test examples coloured by label.

A model that fails is recorded with its error and the others still run. With ``metric_seconds``
the NLL and the sampling pass each stop drawing new batches once that many seconds have passed (the
table then shows the n actually used), and a metric still running at three times that is stopped. Everything is written to ``OUT/results.json`` and ``OUT/results.md``.

A time budget is met without touching the trainer: a short probe on a copy of the model estimates
the step rate, the real run trains that many steps, and if time is left it is extended by resuming
from its own checkpoint (exact resume). A non-constant learning-rate schedule sees the final step
count only from the extension on.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch

from . import config as cfg
from . import ops
from .checkpoint import write_run, write_text_atomic
from .errors import DataError, UnigenError, UnsupportedOperation
from .metrics import EvalContext, quality
from .metrics.throughput import samples_per_sec_from_chunks, training_throughput
from .model import GenerativeModel
from .trainer import Callback, Trainer, TrainerConfig

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
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        if _importing(frame):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        raise MetricTimeout(f"{what} ran past {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def select_models(host: Any, data: str, ids: tuple[str, ...] | None) -> list[Any]:
    kind = host.datasets[data].kind
    if ids:
        return [host.models[i] for i in ids]  # an unknown id fails before any training
    return [s for s in host.models.values() if kind in s.model_cls.data_kinds]


def sampling_steps(model_cls: type, c: BenchConfig) -> tuple[int | None, str]:
    """The steps passed to ``sample`` and how the table shows them."""
    default = model_cls.default_steps
    if c.sample_steps is not None:
        return c.sample_steps, str(c.sample_steps)
    if c.max_sample_steps is not None and default is not None and default > c.max_sample_steps:
        return c.max_sample_steps, f"{c.max_sample_steps} (capped; default {default})"
    return None, "default" if default is None else str(default)


# -- training -------------------------------------------------------------------------------------
def train(model: Any, data: Any, tc: TrainerConfig, run_dir: Path, c: BenchConfig, host: Any,
          strict: bool = True) -> dict[str, Any]:
    """Train for ``c.steps`` steps or ``c.minutes`` minutes; return steps, seconds and the last losses.
    With a time budget and ``strict``, raise :class:`TooSlow` when fewer than ``MIN_STEPS`` fit in it;
    otherwise train what fits (at least one step)."""
    started = time.perf_counter()
    if c.minutes is None:
        trainer = Trainer(model, data, tc, run_dir=run_dir, quiet=True, host=host)
        record = trainer.fit()
        rate = trainer.step / max(time.perf_counter() - started, 1e-9)
    else:
        budget = c.minutes * 60
        rate = None
        if strict:  # a throwaway copy measures the step rate of the default config
            probe = copy.deepcopy(model)
            probe.model_id = model.model_id
            clock = _StepClock()
            try:
                with time_limit(budget / 2, "probe"):
                    Trainer(probe, data, attrs.evolve(tc, steps=3, log_every=3), quiet=True, host=host,
                            callbacks=[clock]).fit()
            except MetricTimeout:
                raise TooSlow(f"three training steps take more than half of the {budget:.0f} s budget") from None
            del probe
            rate = clock.rate()  # steps after the first (which pays for lazy initialisation)
            if rate * budget < MIN_STEPS:
                raise TooSlow(f"only {rate * budget:.0f} training steps fit in the {budget:.0f} s budget")
        steps, record, trainer = 0, {}, None
        for _ in range(5):  # the run, then extensions by exact resume while time is left
            remaining = budget - (time.perf_counter() - started)
            extra = 1 if rate is None else int(remaining * rate * 0.95)  # no estimate yet: one step
            if steps and (extra < max(1, 0.05 * steps) or remaining < 0.1 * budget):
                break
            steps += max(1, extra)
            t0 = time.perf_counter()
            trainer = Trainer(model, data, attrs.evolve(tc, steps=steps, log_every=max(1, min(50, steps))),
                              run_dir=run_dir, quiet=True, host=host)
            done = trainer.resume() and trainer.step
            record = trainer.fit()
            rate = (steps - (done or 0)) / max(time.perf_counter() - t0, 1e-6)
    seconds = time.perf_counter() - started
    model.eval()
    losses = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("loss/")}
    return {"steps": trainer.step, "seconds": seconds, "final_loss": losses, "batch_size": tc.batch_size,
            "steps_per_sec": rate}


class _StepClock(Callback):
    def __init__(self) -> None:
        self.times = [time.perf_counter()]

    def on_step_end(self, trainer: Any, step: int) -> None:
        self.times.append(time.perf_counter())

    def rate(self) -> float:
        t = self.times[2:] if len(self.times) > 2 else self.times
        return (len(t) - 1) / max(t[-1] - t[0], 1e-9) if len(t) > 1 else 0.0


def trainer_config(model_cls: type, c: BenchConfig) -> TrainerConfig:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in model_cls.trainer_defaults.items()}
    values.update(seed=c.seed, device=c.device, steps=c.steps or 1, checkpoint_every=0, keep_checkpoints=1)
    if c.batch_size is not None:
        values["batch_size"] = c.batch_size
    return cfg.build(TrainerConfig, **values)


# -- the loss on one batch and the latent picture ---------------------------------------------------
def loss_on_batch(model: Any, batch: Any, seed: int, host: Any) -> dict[str, float]:
    """The model's training objective on ``batch``, one value per parameter group (gradients allowed:
    a gradient penalty needs them; nothing is stepped)."""
    out: dict[str, float] = {}
    groups = list(model.parameter_groups())
    for group in groups:
        torch.manual_seed(seed)
        value = ops.loss(model, batch, group if len(groups) > 1 else None, host=host)
        value = value[group] if isinstance(value, Mapping) else value
        out[group] = float(value.detach())
    model.zero_grad(set_to_none=True)
    return out


@torch.no_grad()
def latent_pca(model: Any, test: Any, path: Path, n: int = 1000) -> bool:
    """PCA scatter (2 components) of ``latent(x)`` for up to n test examples; False without a latent."""
    x = test.x[:n].to(model.device)
    try:
        z = model.latent(x).flatten(1).double().cpu()  # (N, d)
    except UnsupportedOperation:
        return False
    z = z - z.mean(0)
    if z.shape[1] >= 2:
        _, s, v = torch.linalg.svd(z, full_matrices=False)
        pc = z @ v[:2].T  # (N, 2)
        explained = (s[:2] ** 2 / (s**2).sum()).tolist()
    else:
        pc, explained = torch.cat([z, torch.zeros_like(z)], 1), [1.0, 0.0]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    labels = test.y[:n].numpy() if test.y is not None else None
    sc = ax.scatter(pc[:, 0].numpy(), pc[:, 1].numpy(), c=labels, cmap="tab10", s=6, alpha=0.8)
    if labels is not None:
        ax.legend(*sc.legend_elements(), title="label", fontsize=7, loc="best", markerscale=0.8)
    ax.set_title(f"{model.model_id}: PCA of latent(x), d={z.shape[1]}")
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_chart(rows: list[dict[str, Any]], path: Path, dataset: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2), dpi=100)
    labels = [r["model"] if r["group"] == "main" else f"{r['model']} ({r['group']})" for r in rows]
    values = [r["loss"] for r in rows]
    ax.barh(range(len(rows)), values, color=["tab:red" if v < 0 else "tab:blue" for v in values])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    magnitudes = sorted(abs(v) for v in values if v)
    if magnitudes and magnitudes[-1] > 100 * magnitudes[len(magnitudes) // 2]:  # one huge loss hides the rest
        ax.set_xscale("symlog", linthresh=max(magnitudes[0], 1e-3))
    ax.set_xlabel("training loss on the same batch (each model's own objective)")
    ax.set_title(f"Unified loss comparison on {dataset}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- one model ------------------------------------------------------------------------------------
def evaluate(ctx: EvalContext, c: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """NLL, then one sampling pass shared by FID/KID/IS/PR, each with the soft budget ``metric_seconds``
    (and a hard stop at three times it). A metric that is stopped or raises is reported as None with
    the reason; the others still run."""
    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    blocked: str | None = None  # why the sample-based metrics cannot run
    for metric_id in ("nll", "samples", "fid", "kid", "is", "pr"):
        started = time.perf_counter()
        keys, reason_key = quality.KEYS.get(metric_id, ((), ""))
        if metric_id != "nll" and blocked is not None:
            if metric_id != "samples":
                metrics.update({**dict.fromkeys(keys), reason_key: blocked})
            continue
        try:
            soft = c.metric_seconds
            ctx.deadline = None if soft is None else time.perf_counter() + soft
            with time_limit(None if soft is None else 3 * soft + 5, f"{metric_id} of {ctx.model.model_id}"):
                if metric_id == "samples":  # draw and featurize once, timed on its own
                    quality.reference(ctx)
                    quality.generated(ctx)
                elif metric_id == "nll" and soft is not None:  # small batches: the deadline is checked often
                    metrics.update(ctx.host.metrics[metric_id].compute(attrs.evolve(ctx, batch_size=25)))
                else:
                    metrics.update(ctx.host.metrics[metric_id].compute(ctx))
        except (UnsupportedOperation, DataError) as exc:
            blocked = str(exc)
        except Exception as exc:
            torch.set_grad_enabled(True)  # an exception from the alarm may skip a no_grad's exit
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            why = first if isinstance(exc, MetricTimeout) else f"{type(exc).__name__}: {first}"
            log(f"  {metric_id}: {why}")
            if metric_id == "samples":
                blocked = f"sampling: {why}"
            else:
                metrics.update({**dict.fromkeys(keys), reason_key: why})
        ctx.deadline = None
        seconds[metric_id] = round(time.perf_counter() - started, 2)
    metrics["seconds"] = seconds
    return metrics


def model_sets(c: BenchConfig, model_id: str) -> list[str]:
    """The ``ID.key=value`` items of ``c.sets`` that name this model, as ``key=value``."""
    return [item.split(".", 1)[1] for item in c.sets if item.split(".", 1)[0] == model_id]


def prepare(spec: Any, c: BenchConfig, data: Any, tc: TrainerConfig, run_dir: Path, host: Any, *,
            example: bool) -> Any:
    """Build the model (its default config, or its example config, which may train the small runs it
    needs in ``run_dir/example``) and write a fresh run directory for it."""
    from .api import build_model

    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = None
    if example:
        workdir = run_dir.parent / f".{spec.id}-example"
        workdir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(c.seed)
        config = spec.model_cls.example_config(data.info, workdir)
    torch.manual_seed(c.seed)
    model = build_model(spec.id, data.info, config, overrides=model_sets(c, spec.id), host=host)
    write_run(run_dir, {
        "format": 1, "model": spec.id, "model_config": cfg.to_dict(model.config), "dataset": c.data,
        "data_dir": c.data_dir, "data": cfg.to_dict(data.info), "trainer": cfg.to_dict(tc),
        "plugin": spec.plugin, "family": spec.family, "bench": True,
    })
    return model


def _optional(entry: dict[str, Any], what: str, log: Callable[[str], None], fn: Callable[[], Any]) -> Any:
    """Run a part of the report that must not cost the model its other results; record its error."""
    try:
        return fn()
    except Exception as exc:
        torch.set_grad_enabled(True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        entry.setdefault("errors", {})[what] = f"{type(exc).__name__}: {first}"
        log(f"  {what}: {type(exc).__name__}: {first}")
        return None


def bench_one(spec: Any, c: BenchConfig, train_data: Any, test_data: Any, batch: Any, shared: dict[str, Any],
              host: Any, log: Callable[[str], None]) -> dict[str, Any]:
    from .images import save_samples

    entry: dict[str, Any] = {"model": spec.id, "family": spec.family, "paradigm": spec.paradigm,
                             "logprob": spec.logprob, "plugin": spec.plugin}
    steps, steps_label = sampling_steps(spec.model_cls, c)
    entry["sampling_steps"] = steps_label
    run_dir = c.out / "runs" / spec.id
    tc = trainer_config(spec.model_cls, c)
    fallback: UnigenError | None = None
    try:
        model = prepare(spec, c, train_data, tc, run_dir, host, example=False)
    except UnigenError as exc:  # e.g. a config that needs another run (a teacher, an autoencoder)
        fallback = exc
    else:
        try:
            entry["train"] = train(model, train_data, tc, run_dir, c, host)
        except TooSlow as exc:
            fallback = exc
    entry["config"] = "default"
    if fallback is not None:  # the small config the family declares for its contract tests
        log(f"  default config: {fallback}; using the model's example config instead")
        model = prepare(spec, c, train_data, tc, run_dir, host, example=True)
        entry["config"] = "example"
        entry["config_reason"] = str(fallback)
        entry["train"] = train(model, train_data, tc, run_dir, c, host, strict=False)
    entry["logprob"] = model.logprob_kind  # the built model's capability (it may depend on its config)
    t = entry["train"]
    log(f"  trained {t['steps']} steps in {t['seconds']:.1f} s; loss "
        + ", ".join(f"{k}={v:.4g}" for k, v in t["final_loss"].items()))
    entry["loss_on_batch"] = _optional(entry, "loss_on_batch", log, lambda: loss_on_batch(model, batch, c.seed, host)) or {}
    model.eval()
    record = json.loads((run_dir / "run.json").read_text())
    ctx = EvalContext(model=model, record=record, host=host, n=c.n, batch_size=min(250, max(50, c.n // 5)),
                      seed=c.seed, data_dir=c.data_dir, steps=steps, evaluator=c.evaluator, log=log,
                      cache=dict(shared))
    entry["metrics"] = evaluate(ctx, c, log)
    gen = next((v for k, v in ctx.cache.items() if isinstance(k, tuple) and k[0] == "generated"), None)
    entry["samples_per_sec"] = samples_per_sec_from_chunks(gen.chunk_seconds) if gen else None
    if gen is not None and gen.grid is not None:
        entry["samples_png"] = save_samples(gen.grid, c.out / f"samples-{spec.id}.png").name
    def train_rate() -> dict[str, Any]:
        with time_limit(None if c.metric_seconds is None else 3 * c.metric_seconds + 5, "training throughput"):
            return training_throughput(model, train_data, tc, steps=3, warmup=1, repeats=3, host=host)

    # 10 steps (1 warm-up, 3 x 3 timed); a model too slow for that within the metric budget reports the
    # rate of its training run instead
    if c.metric_seconds is not None and 10 > c.metric_seconds * (t["steps_per_sec"] or 0):
        entry.update(train_steps_per_sec=t["steps_per_sec"], train_steps_per_sec_source="the training run")
    else:
        entry.update(_optional(entry, "train_steps_per_sec", log, train_rate) or {"train_steps_per_sec": None})
    if _optional(entry, "latent_png", log, lambda: latent_pca(model, test_data, c.out / f"latent-{spec.id}.png")):
        entry["latent_png"] = f"latent-{spec.id}.png"
    # the evaluator and the reference features do not depend on the model: later models reuse them
    shared.update({k: v for k, v in ctx.cache.items() if k == "evaluator" or (isinstance(k, tuple) and k[0] == "reference")})
    return entry


# -- the whole bench ------------------------------------------------------------------------------
def run(c: BenchConfig, host: Any = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    from .plugins import default_host

    host = host or default_host()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    specs = select_models(host, c.data, c.models)
    if not specs:
        raise UnigenError(f"no installed model accepts dataset {c.data!r} ({host.datasets[c.data].kind} data)")
    c.out.mkdir(parents=True, exist_ok=True)
    train_data = host.datasets[c.data].load("train", c.data_dir)
    test_data = host.datasets[c.data].load("test", c.data_dir)
    g = torch.Generator().manual_seed(c.seed)
    batch = test_data.batch(torch.randperm(len(test_data), generator=g)[: min(128, len(test_data))])
    budget = f"{c.steps} steps" if c.minutes is None else f"{c.minutes:g} min"
    log(f"bench: {len(specs)} models on {c.data}, {budget} each, n={c.n} -> {c.out}")
    warm_up(host)
    started = time.perf_counter()
    shared: dict[str, Any] = {}
    results: dict[str, Any] = {
        "dataset": c.data, "budget": {"steps": c.steps, "minutes": c.minutes}, "n": c.n, "seed": c.seed,
        "command": " ".join(["unigen", *sys.argv[1:]]) if Path(sys.argv[0]).name == "unigen" else None,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": c.device},
        "models": [],
    }
    for i, spec in enumerate(specs, 1):
        log(f"[{i}/{len(specs)}] {spec.id} ({spec.family})")
        t0 = time.perf_counter()
        try:
            entry = bench_one(spec, c, train_data, test_data, batch, shared, host, log)
            entry["status"] = "ok"
            m = entry["metrics"]
            log(f"  FID {_fmt(m.get('fid'), 2)}, IS {_fmt(m.get('is'), 2)}, P/R {_fmt(m.get('precision'), 3)}/"
                f"{_fmt(m.get('recall'), 3)}, NLL {_fmt(m.get('nll_bits_per_dim'), 3)} ({m.get('nll_kind')}); "
                f"{time.perf_counter() - t0:.1f} s")
        except Exception as exc:  # one model's failure must not stop the others
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            entry = {"model": spec.id, "family": spec.family, "status": "failed",
                     "error": f"{type(exc).__name__}: {first}", "traceback": traceback.format_exc(limit=8)}
            log(f"  FAILED: {entry['error']}")
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        results["models"].append(entry)
    ev = shared.get("evaluator")
    results["evaluator"] = {"name": ev.name, "test_accuracy": ev.accuracy} if ev else None
    results["reference"] = _data_floor(c, host, shared, test_data)
    rows = [{"model": e["model"], "group": g, "loss": v}
            for e in results["models"] if e["status"] == "ok" for g, v in e["loss_on_batch"].items()]
    results["loss_comparison"] = sorted(rows, key=lambda r: r["loss"])
    if rows:
        loss_chart(results["loss_comparison"], c.out / "loss-comparison.png", c.data)
    results["seconds"] = round(time.perf_counter() - started, 1)
    write_text_atomic(c.out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    write_text_atomic(c.out / "results.md", markdown(results))
    log(f"bench done in {results['seconds']:.0f} s: {c.out / 'results.md'}")
    return results


class _Tiny(GenerativeModel):
    family = "warm-up"

    def __init__(self, config: Any, data: Any) -> None:
        super().__init__(config, data)
        self.net = torch.nn.Conv2d(1, 2, 3, padding=1)

    def loss(self, batch: Any, group: str | None = None) -> Any:
        return self.net(batch.x).pow(2).mean()


def warm_up(host: Any) -> None:
    """Two steps of the trainer on a throwaway model, so that the first benchmarked model does not pay
    for the lazy imports and initialisation of the optimizer and autograd (seconds on a busy CPU)."""
    from .data import Dataset
    from .model import DataInfo

    info = DataInfo(name="warm-up", shape=(1, 8, 8), kind="image")
    data = Dataset(info=info, x=torch.zeros(8, 1, 8, 8))
    with torch.random.fork_rng(devices=[]):
        Trainer(_Tiny(None, info), data, TrainerConfig(steps=2, batch_size=4), quiet=True, host=host).fit()


def _data_floor(c: BenchConfig, host: Any, shared: dict[str, Any], test: Any) -> dict[str, Any] | None:
    """FID/IS of held-out data against the same reference: what a perfect model would score at this n."""
    ref = next((v for k, v in shared.items() if isinstance(k, tuple) and k[0] == "reference"), None)
    if ref is None or "evaluator" not in shared:
        return None
    from .metrics import scores

    f, p = shared["evaluator"](test.x[: c.n])
    return {"fid_test_vs_train": scores.fid(ref.features, f), "is_test": scores.inception_score(p)[0] if p is not None else None,
            "n_test": int(f.shape[0])}


# -- the report -----------------------------------------------------------------------------------
def _fmt(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if digits == 0:
        return f"{v:.0f}"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3g}"
    return f"{v:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    b = results["budget"]
    budget = f"{b['steps']} training steps" if b["minutes"] is None else f"{b['minutes']:g} min of training"
    ev = results.get("evaluator") or {}
    lines = [f"# unigen bench: {results['dataset']}", ""]
    if results.get("command"):
        lines += [f"Command: `{results['command']}`", ""]
    lines += [f"Budget: {budget} per model; metrics on n={results['n']} samples against n training examples; "
              f"seed {results['seed']}; {results['machine']['device']}, torch {results['machine']['torch']}, "
              f"{results['machine']['threads']} threads; total {results['seconds']:.0f} s.", ""]
    if ev:
        lines += [f"Scores are on the features of the evaluator network ({ev['name']}, test accuracy "
                  f"{_fmt(ev['test_accuracy'], 4)}), not Inception: compare them within this table only."]
    ref = results.get("reference")
    if ref:
        lines += [f"Held-out data scores FID {_fmt(ref['fid_test_vs_train'], 2)} and IS {_fmt(ref['is_test'], 2)} "
                  f"(n={ref['n_test']}): the floor of FID and the ceiling of IS here."]
    lines += ["", "| Model | Family | NLL bits/dim (exact/bound/estimate) | FID | IS | Precision | Recall | Samples/sec | Sampling steps |",
              "|---|---|---|---|---|---|---|---|---|"]
    ok = [e for e in results["models"] if e["status"] == "ok"]
    ref_n = max((e["metrics"].get("nll_n") or 0 for e in ok), default=0)
    for e in results["models"]:
        if e["status"] != "ok":
            lines.append(f"| {e['model']} | {e['family']} | failed: {e['error'].replace('|', '/')} | | | | | | |")
            continue
        m = e["metrics"]
        name = e["model"] + (" (example config)" if e.get("config") == "example" else "")
        nll = (f"{_fmt(m['nll_bits_per_dim'], 3)} ({m['nll_kind']})" if m.get("nll_bits_per_dim") is not None
               else "n/a (no likelihood)" if m.get("nll_kind") == "none" else "—")
        fid = _fmt(m.get("fid"), 2)
        if m.get("fid") is not None and m.get("sample_n", results["n"]) < results["n"]:
            fid += f" (n={m['sample_n']})"
        if m.get("nll_bits_per_dim") is not None and ref_n and m.get("nll_n", ref_n) < ref_n:
            nll += f" (n={m['nll_n']})"
        lines.append(f"| {name} | {e['family']} | {nll} | {fid} | {_fmt(m.get('is'), 2)} | "
                     f"{_fmt(m.get('precision'), 3)} | {_fmt(m.get('recall'), 3)} | {_fmt(e.get('samples_per_sec'), 0)} | "
                     f"{e['sampling_steps']} |")
    lines += ["", "## Training and KID", "", "| Model | Steps | Train seconds | Train steps/sec | Final loss | KID (x1e3) |",
              "|---|---|---|---|---|---|"]
    for e in ok:
        t, m = e["train"], e["metrics"]
        loss = ", ".join(f"{k} {v:.4g}" for k, v in t["final_loss"].items())
        kid = None if m.get("kid") is None else 1e3 * m["kid"]
        lines.append(f"| {e['model']} | {t['steps']} | {t['seconds']:.1f} | {_fmt(e.get('train_steps_per_sec'), 1)} | "
                     f"{loss} | {_fmt(kid, 2)} |")
    if results["loss_comparison"]:
        lines += ["", "## Unified loss comparison", "",
                  "Every model's own training objective on the same batch of 128 test examples, sorted "
                  "(objectives differ between families: this shows scale and sign, not quality).", "",
                  "![loss comparison](loss-comparison.png)", "", "| Model | Group | Loss |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['group']} | {r['loss']:.4g} |" for r in results["loss_comparison"]]
    pictures = [e for e in ok if e.get("samples_png") or e.get("latent_png")]
    if pictures:
        lines += ["", "## Samples and latent spaces", ""]
        for e in pictures:
            row = [f"![{e['model']} samples]({e['samples_png']})"] if e.get("samples_png") else []
            row += [f"![{e['model']} latent PCA]({e['latent_png']})"] if e.get("latent_png") else []
            lines += [f"**{e['model']}**", "", " ".join(row), ""]
    notes = [f"- {e['model']}: trained with its example config (the small one of the contract tests), because "
             f"the default config failed: {e['config_reason']}" for e in ok if e.get("config") == "example"]
    notes += [f"- {e['model']}: {k[:-7]} not available: {m}" for e in ok for k, m in e["metrics"].items()
              if k.endswith("_reason")]
    if notes:
        lines += ["", "## Notes", ""] + notes
    return "\n".join(lines).rstrip() + "\n"
