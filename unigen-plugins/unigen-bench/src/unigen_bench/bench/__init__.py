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

import json
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from unigen import (
    Trainer,
    TrainerConfig,
    build_model,
    check_data_dir,
    checkpoint,
    dataset_spec,
    default_host,
    images,
    progress,
    testing,
)
from unigen import metrics as unigen_metrics
from unigen.plugin import DataError, DataInfo, Dataset, GenerativeModel, UnigenError, UnsupportedOperation

from ..throughput import samples_per_sec_from_chunks, training_throughput
from .config import BenchConfig, MetricTimeout, TooSlow, sampling_steps, select_models, time_limit
from .pictures import have_matplotlib, latent_pca, loss_chart, loss_on_batch
from .report import _fmt, markdown
from .training import train, trainer_config

# --quick: ~25 models in under 10 minutes on 2 CPU cores.
QUICK = {"data": "digits", "minutes": 0.12, "n": 500, "max_sample_steps": 50, "metric_seconds": 10.0}


# -- one model ------------------------------------------------------------------------------------
def evaluate(ctx: unigen_metrics.EvalContext, c: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """NLL, then one sampling pass shared by FID/KID/IS/PR, each with the soft budget ``metric_seconds``
    (and a hard stop at three times it). A metric that is stopped or raises is reported as None with
    the reason; the others still run."""
    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    blocked: str | None = None  # why the sample-based metrics cannot run
    for metric_id in ("nll", "samples", "fid", "kid", "is", "pr"):
        started = time.perf_counter()
        keys, reason_key = unigen_metrics.quality.KEYS.get(metric_id, ((), ""))
        if metric_id != "nll" and blocked is not None:
            if metric_id != "samples":
                metrics.update({**dict.fromkeys(keys), reason_key: blocked})
            continue
        try:
            soft = c.metric_seconds
            ctx.deadline = None if soft is None else time.perf_counter() + soft
            with time_limit(None if soft is None else 3 * soft + 5, f"{metric_id} of {ctx.model.model_id}"):
                if metric_id == "samples":  # draw and featurize once, timed on its own
                    unigen_metrics.quality.reference(ctx)
                    unigen_metrics.quality.generated(ctx)
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


def prepare(spec: Any, c: BenchConfig, data: Any, run_dir: Path, host: Any, *,
            example: bool) -> tuple[Any, TrainerConfig]:
    """Build the model (its default config, or its example config, which may train the small runs it
    needs in ``run_dir/example``) and its trainer settings, and write a fresh run directory for them."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = None
    if example:
        workdir = run_dir.parent / f".{spec.id}-example"
        workdir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(c.seed)
        config = testing.example_config(spec.model_cls, data.info, workdir, host=host)
    torch.manual_seed(c.seed)
    model = build_model(spec.id, data.info, config, overrides=model_sets(c, spec.id), host=host)
    tc = trainer_config(model, c)
    checkpoint.write_run(run_dir, checkpoint.run_record(model, data.info, tc, dataset=c.data, data_dir=c.data_dir,
                                                        plugin=spec.plugin))
    return model, tc


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
              host: Any, log: Callable[[str], None], phase: Callable[[str], None] = lambda name: None,
              ) -> dict[str, Any]:
    """Train and measure one model; ``phase(name)`` is told each phase as it starts (the progress bar)."""

    entry: dict[str, Any] = {"model": spec.id, "family": spec.family, "paradigm": spec.paradigm,
                             "logprob": spec.logprob, "plugin": spec.plugin}
    steps, steps_label = sampling_steps(spec.model_cls, c)
    entry["sampling_steps"] = steps_label
    run_dir = c.out / "runs" / spec.id
    fallback: UnigenError | None = None
    phase("train")
    try:
        model, tc = prepare(spec, c, train_data, run_dir, host, example=False)
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
        model, tc = prepare(spec, c, train_data, run_dir, host, example=True)
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
    ctx = unigen_metrics.EvalContext(model=model, record=record, host=host, n=c.n, batch_size=min(250, max(50, c.n // 5)),
                      seed=c.seed, data_dir=c.data_dir, steps=steps, evaluator=c.evaluator, log=log,
                      cache=dict(shared))
    phase("metrics")
    entry["metrics"] = evaluate(ctx, c, log)
    gen = next((v for k, v in ctx.cache.items() if isinstance(k, tuple) and k[0] == "generated"), None)
    entry["samples_per_sec"] = samples_per_sec_from_chunks(gen.chunk_seconds) if gen else None
    if gen is not None and gen.grid is not None:
        entry["samples_png"] = images.save_samples(gen.grid, c.out / f"samples-{spec.id}.png").name
    def train_rate() -> dict[str, Any]:
        with time_limit(None if c.metric_seconds is None else 3 * c.metric_seconds + 5, "training throughput"):
            return training_throughput(model, train_data, tc, steps=3, warmup=1, repeats=3, host=host)

    # 10 steps (1 warm-up, 3 x 3 timed); a model too slow for that within the metric budget reports the
    # rate of its training run instead
    phase("throughput")
    if c.metric_seconds is not None and 10 > c.metric_seconds * (t["steps_per_sec"] or 0):
        entry.update(train_steps_per_sec=t["steps_per_sec"], train_steps_per_sec_source="the training run")
    else:
        entry.update(_optional(entry, "train_steps_per_sec", log, train_rate) or {"train_steps_per_sec": None})
    phase("latent picture")
    if have_matplotlib() and _optional(entry, "latent_png", log,
                                       lambda: latent_pca(model, test_data, c.out / f"latent-{spec.id}.png")):
        entry["latent_png"] = f"latent-{spec.id}.png"
    # the evaluator and the reference features do not depend on the model: later models reuse them
    shared.update({k: v for k, v in ctx.cache.items() if k == "evaluator" or (isinstance(k, tuple) and k[0] == "reference")})
    return entry


# -- the whole bench ------------------------------------------------------------------------------
def run(c: BenchConfig, host: Any = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    host = host or default_host()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))

    data_spec = dataset_spec(c.data, host)  # a registered id, or a user's folder/file (its canonical id)
    check_data_dir(data_spec, c.data_dir)
    c = attrs.evolve(c, data=data_spec.id)
    specs = select_models(host, c.data, c.models)
    if not specs:
        raise UnigenError(f"no installed model accepts dataset {c.data!r} ({data_spec.kind} data)")
    c.out.mkdir(parents=True, exist_ok=True)
    train_data = data_spec.load("train", c.data_dir)
    test_data = data_spec.load("test", c.data_dir)
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
    bar = progress.bar(len(specs), "bench", "model") if progress.on_terminal() else None
    if bar is not None:  # the report's lines go above the bar
        log = bar.write
    for i, spec in enumerate(specs, 1):
        log(f"[{i}/{len(specs)}] {spec.id} ({spec.family})")
        t0 = time.perf_counter()

        def phase(name: str, model_id: str = spec.id) -> None:
            if bar is not None:
                bar.set_postfix_str(f"{model_id}: {name}")

        try:
            entry = bench_one(spec, c, train_data, test_data, batch, shared, host, log, phase)
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
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ev = shared.get("evaluator")
    results["evaluator"] = {"name": ev.name, "test_accuracy": ev.accuracy} if ev else None
    results["reference"] = _data_floor(c, host, shared, test_data)
    rows = [{"model": e["model"], "group": g, "loss": v}
            for e in results["models"] if e["status"] == "ok" for g, v in e["loss_on_batch"].items()]
    results["loss_comparison"] = sorted(rows, key=lambda r: r["loss"])
    results["loss_chart"] = None
    if rows and have_matplotlib():
        loss_chart(results["loss_comparison"], c.out / "loss-comparison.png", c.data)
        results["loss_chart"] = "loss-comparison.png"
    elif not have_matplotlib():
        log("matplotlib is not installed: skipped loss-comparison.png and latent-*.png "
            "(pip install 'unigen-bench[plots]'); the tables and sample grids are written")
    results["seconds"] = round(time.perf_counter() - started, 1)
    checkpoint.write_text_atomic(c.out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    checkpoint.write_text_atomic(c.out / "results.md", markdown(results))
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
    info = DataInfo(name="warm-up", shape=(1, 8, 8), kind="image")
    data = Dataset(info=info, x=torch.zeros(8, 1, 8, 8))
    with torch.random.fork_rng(devices=[]):
        Trainer(_Tiny(None, info), data, TrainerConfig(steps=2, batch_size=4), quiet=True, host=host).fit()


def _data_floor(c: BenchConfig, host: Any, shared: dict[str, Any], test: Any) -> dict[str, Any] | None:
    """FID/IS of held-out data against the same reference: what a perfect model would score at this n."""
    ref = next((v for k, v in shared.items() if isinstance(k, tuple) and k[0] == "reference"), None)
    if ref is None or "evaluator" not in shared:
        return None
    scores = unigen_metrics.scores

    f, p = shared["evaluator"](test.floats(slice(0, c.n)))
    return {"fid_test_vs_train": scores.fid(ref.features, f), "is_test": scores.inception_score(p)[0] if p is not None else None,
            "n_test": int(f.shape[0])}


