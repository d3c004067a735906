"""The ``bench`` and ``speed`` commands, added to ``unigen`` through ``unigen_register_commands``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unigen import config as cfg
from unigen import default_host
from unigen.plugin import UnigenError


def _host():
    return default_host()


def _check_set(item: str, models: tuple[str, ...] | None) -> None:
    """``--set ID.KEY=VALUE`` names a model being benched, a key of its config and a value of the
    key's type, checked before any training."""
    target, sep, text = item.partition("=")
    model_id, dot, key = target.strip().partition(".")
    if not sep or not dot or not key:
        raise UnigenError(f"--set {item!r}: write MODEL_ID.KEY=VALUE, e.g. ldm.autoencoder=bench/runs/vae")
    spec = _host().models[model_id]  # an unknown id is one line listing the known ones
    if models is not None and model_id not in models:
        raise UnigenError(f"--set {item!r}: {model_id!r} is not among --models {','.join(models)}")
    fields = cfg.fields_of(spec.model_cls.Config)
    if key not in fields:
        raise UnigenError(f"--set {item!r}: unknown {model_id} key {key!r}; known: {', '.join(fields) or 'none'}")
    cfg.parse_value(fields[key], text.strip())


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
        _check_set(item, models)
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



def add_bench(subparsers: argparse._SubParsersAction) -> None:
    help_text = "train and evaluate several models on one dataset: the cross-family table"
    p = subparsers.add_parser("bench", help=help_text, description=help_text)
    _bench_args(p)
    p.set_defaults(run=_cmd_bench)


def add_speed(subparsers: argparse._SubParsersAction) -> None:
    help_text = "the speed report: trainer overhead, sampler steps, samples/sec, memory, scaling"
    p = subparsers.add_parser("speed", help=help_text, description=help_text)
    _speed_args(p)
    p.set_defaults(run=_cmd_speed)
