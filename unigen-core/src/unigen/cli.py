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
from .plugins import PluginWarning


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
    p.add_argument("--data", default="digits", help="dataset id, or your own data: a folder of images, a .npy/.npz/"
                                                    ".csv file, or KIND:PATH (folder, npy, npz, csv, hf); default: digits")
    p.add_argument("--data-dir", help="directory with a registered dataset's files (e.g. mnist)")
    _data_options(p)
    p.add_argument("--flip", action="store_true", help="random horizontal flips of training images")
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


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, metavar="S", help="your images: resize the shorter side to S and "
                                                                "crop the centre S x S (default: their own size)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="your images: grey (1) or colour (3) "
                                                                  "(default: 3 if any image is in colour)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="read your images from disk per batch (default: when they would take more than a "
                        "quarter of the memory)")


def _data_spec(args: argparse.Namespace, host: Any) -> Any:
    from .data.sources import check_data_dir, dataset_spec

    spec = dataset_spec(args.data, host, image_size=args.image_size, channels=args.channels,
                        stream=args.stream)
    check_data_dir(spec, args.data_dir)
    return spec


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
    data_spec = _data_spec(args, host)  # unknown ids and bad files fail here, before anything is written
    name = data_spec.id if data_spec.id in host.datasets else data_spec.load("train").info.name
    out = Path(args.out or f"runs/{args.model}-{name}")
    flags = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "device": args.device, "checkpoint_every": args.checkpoint_every,
             "keep_checkpoints": args.keep_checkpoints, "flip": True if args.flip else None}
    flag_sets = [f"{k}={v}" for k, v in flags.items() if v is not None]

    if args.resume and (out / "run.json").exists():
        record = read_run(out)
        if record["model"] != args.model or record["dataset"] != data_spec.id:
            raise UnigenError(f"{out} holds a {record['model']} run on {record['dataset']}, not {args.model} on {data_spec.id}")
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
    train = data_spec.load("train", data_dir)
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
                    "format": 1, "model": args.model, "model_config": cfg.to_dict(model_cfg), "dataset": data_spec.id,
                    "data_dir": data_dir, "data": cfg.to_dict(train.info), "trainer": cfg.to_dict(trainer_cfg),
                    "plugin": spec.plugin, "family": spec.family,
                })
            if dist.is_main and not args.quiet:
                what = f"resumed at step {trainer.step}" if resumed else "from scratch"
                print(f"training {args.model} on {data_spec.id} ({len(train)} examples) {what} -> {out}", file=sys.stderr)
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
    if args.data_dir:
        from .data.sources import check_data_dir, dataset_spec

        check_data_dir(dataset_spec(run.record["dataset"], host), args.data_dir)
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
}


def build_parser(host: Any = None) -> argparse.ArgumentParser:
    """The core's commands, then every plugin's (``unigen_register_commands``); each sets ``run``."""
    parser = _Parser(prog="unigen", description="One interface for every family of generative model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, configure, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(run=run)
    host = host or _host()
    for impl in reversed(host.pm.hook.unigen_register_commands.get_hookimpls()):  # registration order
        try:
            impl.function(subparsers=sub)
        except Exception as exc:  # a broken plugin must not take the command down
            warnings.warn(f"unigen plugin {impl.plugin_name!r}: its commands were skipped: "
                          f"{type(exc).__name__}: {exc}", PluginWarning, stacklevel=2)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A plugin warning is one line for the user, not the core's source line that issued it."""
    from .plugins import PluginWarning

    if issubclass(category, PluginWarning):
        print(str(message), file=file or sys.stderr)
    else:
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


def _not_installed(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The one-line hint for a command of a distribution that is not installed, or None."""
    from .registry import provider_of

    command = next((a for a in argv if not a.startswith("-")), None)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command is None or command in sub.choices:
        return None
    dist = provider_of("commands", command)
    return f"'unigen {command}' comes with {dist}, which is not installed: pip install {dist}" if dist else None


def main(argv: Sequence[str] | None = None) -> int:
    from .malloc import tune

    if not os.environ.get("UNIGEN_SHOW_PLUGIN_WARNINGS"):
        warnings.simplefilter("default")
    warnings.showwarning = _show_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        hint = _not_installed(parser, argv)
        if hint:
            raise UnigenError(hint)
    except UnigenError as exc:
        print(f"unigen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    args = parser.parse_args(argv)
    tune()  # keep freed tensor memory in the process (unigen.malloc; UNIGEN_MALLOC=system: off)
    try:
        return args.run(args)
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
