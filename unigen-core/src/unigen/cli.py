"""The ``unigen`` command. Subcommands are a table of (configure, run) pairs, not a branch chain.

A user's mistake (unknown id, bad value, missing run directory) is one line on stderr and exit 2;
a training run that diverges exits 1 with one line. Never a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .api import load_run
from .data.sources import check_data_dir, dataset_spec
from .drawing import sample_chunked
from .errors import UnigenError
from .images import save_samples
from .malloc import tune
from .metrics.evaluator import stderr_log
from .plugins import GROUP, PluginWarning, default_host
from .registry import provider_of
from .scaffold import new_plugin
from .training import train


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _host():
    return default_host()


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


# -- checks done before any work (a model is never built for a command that will fail) -------------------
SEED_RANGE = (-(2**63), 2**64)  # what torch.manual_seed accepts


def _check_positive(args: argparse.Namespace, *flags: str) -> None:
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UnigenError(f"--{flag.replace('_', '-')} must be positive, got {value}")


def _check_seed(seed: int | None) -> None:
    if seed is not None and not SEED_RANGE[0] <= seed < SEED_RANGE[1]:
        raise UnigenError(f"--seed must be an integer in [-2**63, 2**64), got {seed}")


def _check_device(device: str | None) -> None:
    """cpu, cuda, cuda:N or mps, present on this machine (one error line otherwise)."""
    from .trainer import resolve_device

    if device is not None:
        resolve_device(device)


def _check_output_file(out: Path, suffixes: Sequence[str]) -> None:
    if out.suffix not in suffixes:
        raise UnigenError(f"--out {out}: write FILE{' or FILE'.join(suffixes)}")
    if out.is_dir():
        raise UnigenError(f"--out {out} is a directory; give a file name")
    if not out.parent.is_dir():
        raise UnigenError(f"--out {out}: folder {out.parent} does not exist")


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
              "ids": ", ".join(i for k in ("models", "datasets", "samplers", "metrics", "loggers") for i in r.get(k, []))}
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
    p.add_argument("--grad-accum", type=int, metavar="K", help="K micro-batches of --batch-size per optimizer step")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="autocast the loss (weights stay fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model's networks")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run directory (default: runs/MODEL-DATASET)")
    p.add_argument("--config", help="TOML file with [model] and/or [trainer] tables (or flat keys)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model or trainer setting; repeatable")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--device", metavar="cpu|cuda|cuda:N|mps")
    p.add_argument("--no-tf32", action="store_true", help="on CUDA: full float32 matmuls and convolutions")
    p.add_argument("--channels-last", action="store_true", help="conv models: channels-last weights and batches")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--keep-checkpoints", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress bar (on a terminal) or lines (off one)")
    p.add_argument("--logger", dest="loggers", action="append", default=[], metavar="ID",
                   help="send losses, lr, steps/s, gradient norms and sample grids to a logger: csv, "
                        "tensorboard, wandb or a plugin's (metrics.jsonl is always written); repeatable")
    p.add_argument("--sample-every", type=int, default=0, metavar="N",
                   help="every N steps, a grid of samples from fixed noise into RUN_DIR/samples/ and the loggers")


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, metavar="S", help="your images: resize the shorter side to S and "
                                                                "crop the centre S x S (default: their own size)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="your images: grey (1) or colour (3) "
                                                                  "(default: 3 if any image is in colour)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="read your images from disk per batch (default: when they would take more than a "
                        "quarter of the memory)")


def _data_spec(args: argparse.Namespace, host: Any) -> Any:
    spec = dataset_spec(args.data, host, image_size=args.image_size, channels=args.channels,
                        stream=args.stream)
    check_data_dir(spec, args.data_dir)
    return spec


def _cmd_train(args: argparse.Namespace) -> int:
    host = _host()
    host.models[args.model]  # an unknown model fails before the data is read
    flags = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "device": args.device, "checkpoint_every": args.checkpoint_every,
             "keep_checkpoints": args.keep_checkpoints, "flip": True if args.flip else None,
             "grad_accum": args.grad_accum, "precision": args.precision,
             "compile": True if args.compile else None, "tf32": False if args.no_tf32 else None,
             "channels_last": True if args.channels_last else None}
    sets = [*args.sets, *(f"trainer.{k}={v}" for k, v in flags.items() if v is not None)]
    run = train(args.model, _data_spec(args, host), out=args.out, resume=args.resume, config=args.config, sets=sets,
                data_dir=args.data_dir, quiet=args.quiet, host=host, loggers=args.loggers,
                sample_every=args.sample_every)
    if run is not None:  # rank 0
        last = _last_record(run.run_dir)
        losses = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k.startswith("loss/"))
        print(f"done: step {last.get('step', 0)}, {losses}; run directory {run.run_dir}")
    return 0


def _last_record(run_dir: Path) -> dict[str, Any]:
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return {}
    return json.loads(lines[-1]) if lines else {}


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
    p.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N|mps")


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch


    _check_positive(args, "n", "batch_size", "steps")
    _check_seed(args.seed)
    _check_device(args.device)
    out = Path(args.out or Path(args.run_dir) / "samples.png")
    _check_output_file(out, (".png", ".npy"))
    sets = list(args.sets) + ([f"prompt={args.prompt}"] if args.prompt is not None else [])
    run = load_run(args.run_dir, ema=False if args.no_ema else None, device=args.device, overrides=sets, host=_host())
    torch.manual_seed(args.seed)
    x = sample_chunked(run.model, args.n, args.steps, args.batch_size, host=_host(),
                       out=out if out.suffix == ".npy" else None, progress=sys.stderr.isatty())
    if x is not None:  # None: written straight into the .npy file
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
    p.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N|mps")
    p.add_argument("--sample-steps", type=int, help="sampling steps for fid/kid/is/pr (default: the model's)")
    p.add_argument("--evaluator", help="feature extractor for fid/kid/is/pr (torch.export .pt2 or TorchScript file) "
                                       "mapping images in [-1, 1] to features or (features, logits); default: the "
                                       "dataset's evaluator CNN, trained once and cached")


def _cmd_eval(args: argparse.Namespace) -> int:
    _check_positive(args, "n", "sample_steps")
    _check_seed(args.seed)
    _check_device(args.device)
    host = _host()
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    for m in names or ():
        host.metrics[m]  # unknown ids fail before any work
    run = load_run(args.run_dir, device=args.device, host=host)
    if args.data_dir:
        check_data_dir(dataset_spec(run.record["dataset"], host), args.data_dir)

    result = run.eval(names, n=args.n, seed=args.seed, data_dir=args.data_dir, sample_steps=args.sample_steps,
                      evaluator=args.evaluator, log=stderr_log, host=host, progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    return 0


def _new_plugin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the plugin and model id, e.g. maf (the distribution is unigen-NAME)")
    p.add_argument("--dir", default=".", help="where to create the NAME folder (default: here)")


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    root = new_plugin(args.name, Path(args.dir))
    print(f"wrote {root}: pip install -e '{root}[test]' && (cd {root} && pytest)")
    return 0


# -- plot and runs ------------------------------------------------------------------------------
def _plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--out", help="FILE.png (default: RUN_DIR/losses.png)")


def _cmd_plot(args: argparse.Namespace) -> int:
    from .runs import plot

    out, groups = plot(args.run_dir, args.out)
    print(f"wrote the loss curves of {', '.join(g for g in groups)} to {out}")
    return 0


def _runs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default="runs", help="where to look for run directories (default: runs)")
    p.add_argument("--json", action="store_true")


def _cmd_runs(args: argparse.Namespace) -> int:
    from .runs import find_runs, format_row

    rows = find_runs(args.dir)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table([format_row(r) for r in rows], ["run", "model", "data", "steps", "last losses", "eval"])
    return 0


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


COMMANDS: dict[str, Command] = {
    "plugins": ("list installed plugins, their versions, hooks and ids", _json_flag, _cmd_plugins),
    "models": ("list model ids with family, paradigm and logprob capability (default first; a|b: depends on the config)", _json_flag, _cmd_models),
    "datasets": ("list dataset ids", _json_flag, _cmd_datasets),
    "new-plugin": ("write a ready plugin distribution (model, plugin module, contract tests, noxfile)",
                   _new_plugin_args, _cmd_new_plugin),
    "train": ("train a model", _train_args, _cmd_train),
    "sample": ("draw samples from a trained run", _sample_args, _cmd_sample),
    "eval": ("evaluate a trained run", _eval_args, _cmd_eval),
    "plot": ("draw the loss curves of every group of a run (metrics.jsonl) to a PNG", _plot_args, _cmd_plot),
    "runs": ("list the run directories under DIR: model, data, steps done, last losses, latest eval", _runs_args,
             _cmd_runs),
}


def installed_versions() -> list[tuple[str, str]]:
    """(distribution, version) of unigen-core and of every distribution with a ``unigen`` entry point."""
    from importlib_metadata import distributions

    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().replace("_", "-") == "unigen-core" or any(ep.group == GROUP for ep in dist.entry_points):
            found[name] = dist.version
    return sorted(found.items(), key=lambda kv: (kv[0] != "unigen-core", kv[0]))


def check_import_owner() -> None:
    """Refuse to run beside PyPI's unrelated ``unigen`` distribution.

    That audio-tagging library installs an import package of the same name, ``unigen``; with both
    installed, one overwrites the other's files. Looking the distribution up by name is one metadata
    lookup (mapping every installed file to its distribution would cost seconds per command)."""
    import importlib_metadata

    try:
        other = importlib_metadata.distribution("unigen")
    except importlib_metadata.PackageNotFoundError:
        return
    raise UnigenError(f"the distribution 'unigen' {other.version} (an unrelated package) is installed and also "
                      "provides the import package 'unigen', so the two overwrite each other: "
                      "pip uninstall unigen unigen-core && pip install unigen-core")


class _Version(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        sys.stdout.write("".join(f"{name} {version}\n" for name, version in installed_versions()))
        parser.exit(0)


def build_parser(host: Any = None) -> argparse.ArgumentParser:
    """The core's commands, then every plugin's (``unigen_register_commands``); each sets ``run``."""
    parser = _Parser(prog="unigen", description="One interface for every family of generative model.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the versions of unigen-core and of every installed unigen plugin distribution")
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
    if issubclass(category, PluginWarning):
        print(str(message), file=file or sys.stderr)
    else:
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


def _not_installed(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The one-line hint for a command of a distribution that is not installed, or None."""
    command = next((a for a in argv if not a.startswith("-")), None)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command is None or command in sub.choices:
        return None
    dist = provider_of("commands", command)
    return f"'unigen {command}' comes with {dist}, which is not installed: pip install {dist}" if dist else None


def _error(exc: UnigenError) -> int:
    """Print a user's error, one line per line of its message (run.json problems), and its exit code."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(f"unigen: error: {line}", file=sys.stderr)
    return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    if not os.environ.get("UNIGEN_SHOW_PLUGIN_WARNINGS"):
        warnings.simplefilter("default")
    warnings.showwarning = _show_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        check_import_owner()
        parser = build_parser()
        hint = _not_installed(parser, argv)
        if hint:
            raise UnigenError(hint)
    except UnigenError as exc:
        return _error(exc)
    args = parser.parse_args(argv)
    tune()  # keep freed tensor memory in the process (unigen.malloc; UNIGEN_MALLOC=system: off)
    try:
        return args.run(args)
    except UnigenError as exc:
        return _error(exc)
    except KeyboardInterrupt:
        print("unigen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
