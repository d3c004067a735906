"""The ``unigen`` command. Subcommands are a table of (configure, run) pairs, not a branch chain.

A user's mistake (unknown id, bad value, missing run directory) is one line on stderr and exit 2;
a training run that diverges exits 1 with one line. Never a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import UnigenError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _host():
    from .plugins import default_host

    return default_host()


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


# -- listings ---------------------------------------------------------------------------------------
def _cmd_plugins(args: argparse.Namespace) -> int:
    host = _host()
    rows = []
    for name in host.plugin_names():
        ids = host.ids_of(name)
        rows.append({"name": name, "distribution": host.dists.get(name, ""), "hooks": host.hooks_of(name),
                     **{k: v for k, v in ids.items()}})
    failed = [{"name": f.name, "distribution": f.dist, "error": f.error} for f in host.failures]
    if args.json:
        refused = {reg.what: sorted(reg.refused) for reg in (host.models, host.datasets, host.samplers, host.metrics)
                   if reg.refused}
        print(json.dumps({"plugins": rows, "failed": failed, "blocked": host.blocked, "refused": refused}, indent=2))
        return 0
    table = [{"plugin": r["name"], "distribution": r["distribution"],
              "ids": ", ".join(i for k in ("models", "datasets", "samplers", "metrics") for i in r.get(k, []))}
             for r in rows]
    _print_table(table, ["plugin", "distribution", "ids"])
    for f in failed:
        print(f"failed: {f['name']} ({f['distribution']}): {f['error']}", file=sys.stderr)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    # logprob: the default capability; logprob_kinds: all a config can give ("exact|estimate" in the table)
    rows = [{"id": s.id, "family": s.family, "paradigm": s.paradigm, "logprob": s.logprob,
             "logprob_kinds": list(s.logprob_kinds), "plugin": s.plugin, "description": s.description}
            for s in _host().models.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table([{**r, "logprob": "|".join(r["logprob_kinds"])} for r in rows],
                     ["id", "family", "paradigm", "logprob", "plugin"])
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    rows = [{"id": s.id, "kind": s.kind, "plugin": s.plugin, "description": s.description}
            for s in _host().datasets.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["id", "kind", "plugin", "description"])
    return 0


# -- train --------------------------------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model id (see `unigen models`)")
    p.add_argument("--data", default="digits", help="dataset id (default: digits)")
    p.add_argument("--data-dir", help="directory with the dataset's files")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run directory (default: runs/MODEL-DATASET)")
    p.add_argument("--config", help="TOML file with [model] and/or [trainer] tables (or flat keys)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model or trainer setting; repeatable")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--keep-checkpoints", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _flat_sets(values: dict[str, Any]) -> list[str]:
    out = []
    for k, v in values.items():
        if isinstance(v, dict):
            out += _flat_sets(v)
        elif isinstance(v, (list, tuple)):
            out.append(f"{k}={json.dumps(list(v))}")
        else:
            out.append(f"{k}={v}")
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from . import config as cfg
    from .checkpoint import clean_stale, read_run, write_run
    from .distributed import DistributedContext
    from .runlock import RunLock
    from .trainer import Trainer, TrainerConfig

    host = _host()
    spec = host.models[args.model]
    host.datasets[args.data]  # fail early on an unknown dataset
    out = Path(args.out or f"runs/{args.model}-{args.data}")
    flags = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "device": args.device, "checkpoint_every": args.checkpoint_every,
             "keep_checkpoints": args.keep_checkpoints}
    flag_sets = [f"{k}={v}" for k, v in flags.items() if v is not None]

    if args.resume and (out / "run.json").exists():
        record = read_run(out)
        if record["model"] != args.model or record["dataset"] != args.data:
            raise UnigenError(f"{out} holds a {record['model']} run on {record['dataset']}, not {args.model} on {args.data}")
        model_cfg = cfg.from_dict(spec.model_cls.Config, record["model_config"], what=f"{args.model} config")
        trainer_cfg = cfg.from_dict(TrainerConfig, record["trainer"], what="trainer config")
        changed = cfg.apply_overrides({"trainer": trainer_cfg}, flag_sets)
        trainer_cfg = changed["trainer"]
        data_dir = args.data_dir or record.get("data_dir")
    else:
        if (out / "run.json").exists() and not args.resume:
            raise UnigenError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        model_cfg = spec.model_cls.Config()
        defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.model_cls.trainer_defaults.items()}
        trainer_cfg = cfg.build(TrainerConfig, **defaults)
        file_sets = _flat_sets(cfg.load_toml(args.config)) if args.config else []
        changed = cfg.apply_overrides({"model": model_cfg, "trainer": trainer_cfg}, file_sets + args.sets + flag_sets)
        model_cfg, trainer_cfg = changed["model"], changed["trainer"]
        data_dir = args.data_dir

    dist = DistributedContext.from_env(trainer_cfg.device)
    train = host.datasets[args.data].load("train", data_dir)
    train.check_finite()
    torch.manual_seed(trainer_cfg.seed)
    from .api import build_model

    model = build_model(args.model, train.info, model_cfg, host=host)
    trainer = Trainer(model, train, trainer_cfg, run_dir=out, quiet=args.quiet, host=host, data_dir=data_dir,
                      rank=dist.rank, world_size=dist.world_size)
    # Everything that can fail on a user's mistake has run: only now is the run directory written,
    # by one process at a time (rank 0 holds its lock; a failed start leaves no run.json behind).
    lock = RunLock(out) if dist.is_main else contextlib.nullcontext()
    try:
        with lock:
            if dist.is_main:
                if not args.resume and (out / "run.json").exists():
                    raise UnigenError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
                clean_stale(out)
            resumed = trainer.resume() if args.resume else False
            if dist.is_main:
                write_run(out, {
                    "format": 1, "model": args.model, "model_config": cfg.to_dict(model_cfg), "dataset": args.data,
                    "data_dir": data_dir, "data": cfg.to_dict(train.info), "trainer": cfg.to_dict(trainer_cfg),
                    "plugin": spec.plugin, "family": spec.family,
                })
            if dist.is_main and not args.quiet:
                what = f"resumed at step {trainer.step}" if resumed else "from scratch"
                print(f"training {args.model} on {args.data} ({len(train)} examples) {what} -> {out}", file=sys.stderr)
            record = trainer.fit()
    finally:
        dist.close()
    if dist.is_main:
        losses = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k.startswith("loss/"))
        print(f"done: step {trainer.step}, {losses}; run directory {out}")
    return 0


# -- sample -------------------------------------------------------------------------------------------
def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--out", help="FILE.png or FILE.npy (default: RUN_DIR/samples.png)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500, help="samples drawn per chunk (bounds memory)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampling-time model setting, e.g. sampler=heun or truncation=0.7")
    p.add_argument("--prompt", help="a text prompt, for models that take one (same as --set prompt=...)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even when EMA weights exist")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .api import load_run
    from .images import save_samples
    from .sampling import sample_chunked

    if args.n <= 0:
        raise UnigenError(f"--n must be positive, got {args.n}")
    sets = list(args.sets) + ([f"prompt={args.prompt}"] if args.prompt is not None else [])
    run = load_run(args.run_dir, ema=False if args.no_ema else None, device=args.device, overrides=sets, host=_host())
    torch.manual_seed(args.seed)
    out = Path(args.out or Path(args.run_dir) / "samples.png")
    x = sample_chunked(run.model, args.n, args.steps, args.batch_size, host=_host(),
                       out=out if out.suffix == ".npy" else None)
    if out.suffix != ".npy":
        save_samples(x, out)
    print(f"wrote {args.n} samples to {out}")
    return 0


# -- eval ---------------------------------------------------------------------------------------------
def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--metrics", help="comma-separated metric ids (see `unigen plugins`; default: the model's "
                                     "default_metrics, e.g. nll, or probe for jepa)")
    p.add_argument("--n", type=int, default=1000, help="examples/samples per metric")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-dir")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--sample-steps", type=int, help="sampling steps for fid/kid/is/pr (default: the model's)")
    p.add_argument("--evaluator", help="feature extractor for fid/kid/is/pr (torch.export .pt2 or TorchScript file) "
                                       "mapping images in [-1, 1] to features or (features, logits); default: the "
                                       "dataset's evaluator CNN, trained once and cached")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .api import load_run
    from .metrics import EvalContext

    host = _host()
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else []
    specs = [host.metrics[m] for m in names]  # unknown ids fail before any work
    run = load_run(args.run_dir, device=args.device, host=host)
    if args.metrics is None:  # the model says what evaluates it (GenerativeModel.default_metrics)
        specs = [host.metrics[m] for m in run.model.default_metrics]
    from .metrics.evaluator import stderr_log

    if args.n <= 0:
        raise UnigenError(f"--n must be positive, got {args.n}")
    ctx = EvalContext(model=run.model, record=run.record, host=host, n=args.n, seed=args.seed, data_dir=args.data_dir,
                      steps=args.sample_steps, evaluator=args.evaluator, log=stderr_log)
    result: dict[str, Any] = {"model": run.record["model"], "dataset": run.record["dataset"],
                              "checkpoint": run.checkpoint.name, "ema": run.ema}
    for spec in specs:
        result.update(spec.compute(ctx))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    return 0


# -- bench --------------------------------------------------------------------------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="comma-separated model ids (default: every installed id that accepts the data)")
    p.add_argument("--data", help="dataset id (default: digits)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="training steps per model (default: 1000)")
    budget.add_argument("--minutes", type=float, help="wall-clock minutes of training per model")
    p.add_argument("--quick", action="store_true",
                   help="small budget on digits for every installed model (7 s of training each, n=500, "
                        "at most 50 sampling steps, 10 s soft budget for NLL and for sampling)")
    p.add_argument("--out", default="bench", help="output directory (default: ./bench)")
    p.add_argument("--n", type=int, help="samples for FID/KID/IS/PR (default: 1000; --quick: 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, help="training batch size for every model (default: each model's)")
    p.add_argument("--sample-steps", type=int, help="sampling steps for every model (default: each model's)")
    p.add_argument("--max-sample-steps", type=int,
                   help="cap each model's default sampling steps at this (models with fewer keep theirs); "
                        "--quick: 50")
    p.add_argument("--metric-seconds", type=float,
                   help="soft time budget of the NLL and of the sampling pass per model (fewer examples/samples "
                        "are used when it runs out; stopped at 3x); default: none, --quick: 10")
    p.add_argument("--evaluator", help="feature extractor file (.pt2 or TorchScript) instead of the dataset's evaluator CNN")
    p.add_argument("--data-dir", help="directory with the dataset's files")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="ID.KEY=VALUE",
                   help="change one model's config, e.g. ldm.autoencoder=bench/runs/vae; repeatable")


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from . import bench

    for flag in ("steps", "n", "batch_size", "sample_steps", "max_sample_steps", "threads"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UnigenError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    if args.minutes is not None and args.minutes <= 0:
        raise UnigenError(f"--minutes must be positive, got {args.minutes}")
    if args.threads:
        torch.set_num_threads(args.threads)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else None
    for item in args.sets:
        if "." not in item.split("=", 1)[0]:
            raise UnigenError(f"--set {item!r}: write MODEL_ID.KEY=VALUE, e.g. ldm.autoencoder=bench/runs/vae")
    given = {"models": models, "data": args.data, "n": args.n, "seed": args.seed, "batch_size": args.batch_size,
             "sample_steps": args.sample_steps, "max_sample_steps": args.max_sample_steps, "metric_seconds": args.metric_seconds, "data_dir": args.data_dir,
             "evaluator": args.evaluator, "device": args.device, "steps": args.steps, "minutes": args.minutes,
             "sets": tuple(args.sets)}
    if args.quick:
        c = bench.BenchConfig.quick(args.out, **given)
    else:
        if args.steps is None and args.minutes is None:
            given["steps"] = 1000
        c = bench.BenchConfig(out=args.out, **{k: v for k, v in given.items() if v is not None})
    bench.run(c, host=_host())
    return 0


# -- speed --------------------------------------------------------------------------------------------
def _speed_args(p: argparse.ArgumentParser) -> None:
    from .speed import SECTIONS

    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quick", action="store_true", help="fewer repeats and samples (about 8 minutes on 2 cores, against about 21 for the full report; its "
                        "overhead ratios are noisier)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile for train and sample")
    p.add_argument("--sections", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    p.add_argument("--overhead-model", default="vae", help="model id for the trainer-overhead figures (default: vae)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, for stable figures)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", help="also write the JSON report to this file")


def _cmd_speed(args: argparse.Namespace) -> int:
    import torch

    from . import speed

    sections = speed.SECTIONS
    if args.sections:
        sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
        unknown = [s for s in sections if s not in speed.SECTIONS]
        if unknown:
            raise UnigenError(f"unknown section {unknown[0]!r}; known: {', '.join(speed.SECTIONS)}")
    if args.threads <= 0:
        raise UnigenError(f"--threads must be positive, got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UnigenError("--device cuda was asked for but CUDA is not available")
    torch.set_num_threads(args.threads)
    log = (lambda msg: print(f"[speed] {msg}", file=sys.stderr, flush=True))
    compile_ = args.compile or bool(args.sections and "compile" in sections)  # named explicitly: measured
    ctx = speed.Context(host=_host(), quick=args.quick, compile=compile_, device=torch.device(args.device),
                        overhead_model=args.overhead_model, log=log)
    report = speed.run(ctx, sections)
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text if args.json else speed.format_report(report))
    return 0


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


COMMANDS: dict[str, Command] = {
    "plugins": ("list installed plugins, their versions, hooks and ids", _json_flag, _cmd_plugins),
    "models": ("list model ids with family, paradigm and logprob capability (default first; a|b: depends on the config)", _json_flag, _cmd_models),
    "datasets": ("list dataset ids", _json_flag, _cmd_datasets),
    "train": ("train a model", _train_args, _cmd_train),
    "sample": ("draw samples from a trained run", _sample_args, _cmd_sample),
    "eval": ("evaluate a trained run", _eval_args, _cmd_eval),
    "bench": ("train and evaluate several models on one dataset: the cross-family table", _bench_args, _cmd_bench),
    "speed": ("the speed report: trainer overhead, sampler steps, samples/sec, memory, scaling", _speed_args,
              _cmd_speed),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unigen", description="One interface for every family of generative model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A plugin warning is one line for the user, not the core's source line that issued it."""
    from .plugins import PluginWarning

    if issubclass(category, PluginWarning):
        print(str(message), file=file or sys.stderr)
    else:
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .malloc import tune

    tune()  # keep freed tensor memory in the process (unigen.malloc; UNIGEN_MALLOC=system: off)
    if not os.environ.get("UNIGEN_SHOW_PLUGIN_WARNINGS"):
        warnings.simplefilter("default")
    warnings.showwarning = _show_warning
    try:
        return COMMANDS[args.command][2](args)
    except UnigenError as exc:
        print(f"unigen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("unigen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
