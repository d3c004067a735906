"""Run directories and atomic checkpoints.

A run directory holds::

    run.json                      model id, model config, data info, trainer config (JSON)
    metrics.jsonl                 one JSON record per logged step
    checkpoints/step_00000500/    model.safetensors, ema.safetensors (optional), state.pt
    checkpoints/latest            the name of the newest complete checkpoint

A checkpoint is written into a temporary folder, flushed, and renamed into place; only then does
``latest`` move (itself written to a temporary file and renamed). A crash or kill at any moment
therefore leaves the previous checkpoint loadable; a failed write (a full disk) removes its temporary
folder, and :func:`clean_stale` removes what a killed writer left. ``latest`` is followed only to a
direct child of ``checkpoints/`` (checked after resolving links), and weights with NaN/inf are refused
when loaded. Weights are safetensors; ``state.pt`` holds only
tensors and plain containers and is read with ``torch.load(weights_only=True)``: loading never
executes code.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import to_dict
from .errors import CheckpointError, CheckpointWriteError

RUN_FILE = "run.json"
EVAL_FILE = "eval.json"  # the latest `unigen eval` results (unigen.Run.eval)
CKPT_DIR = "checkpoints"
LATEST = "latest"
METRICS = "metrics.jsonl"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the rename itself is still atomic
        return
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _writer_alive(name: str) -> bool:
    """Whether the process whose pid ends a temporary entry's name (``.x.tmp-PID``) still runs: a
    reader (``unigen eval`` writing eval.json) may be mid-write while a trainer starts."""
    pid = name.rsplit("-", 1)[-1]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):  # no such process (or no such pid at all)
        return False
    except PermissionError:  # it exists, run by another user
        return True
    return True


def clean_stale(run_dir: Path) -> list[str]:
    """Remove the temporary entries (``.tmp-*``, ``.old-*``, ``.NAME.tmp-*``) that a killed writer left;
    an entry of a process that still runs is kept. Call it only while holding the run's lock
    (:mod:`unigen.runlock`); returns what was removed."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / CKPT_DIR):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            temporary = p.name.startswith((".tmp-", ".old-")) or (p.name.startswith(".") and ".tmp-" in p.name)
            if temporary and not _writer_alive(p.name):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p.name)
    return removed


def state_dict_for_save(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's state with tied tensors stored once (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in module.state_dict().items():
        out[k] = v.detach().cpu().contiguous().clone()
    return out


def save_weights(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, str(path))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from None


def first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN/inf, or None. One reduction per
    tensor and a single host sync: the per-tensor sums of ``|t|`` are stacked and checked at once
    (a sum is NaN/inf exactly when an element is, short of an overflow of finite values > 1e38)."""
    names = [k for k, t in tensors.items() if t.is_floating_point() and t.numel()]
    if not names:
        return None
    sums = torch.stack([tensors[k].detach().abs().sum(dtype=torch.float64) for k in names])
    if bool(torch.isfinite(sums).all()):
        return None
    return names[int((~torch.isfinite(sums)).nonzero()[0])]


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load tensors into a module, refusing unknown/missing keys, wrong shapes and NaN/inf by name."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unknown = sorted(set(tensors) - set(own))
    if missing or unknown:
        what = f"missing {missing[0]!r}" if missing else f"unknown {unknown[0]!r}"
        raise CheckpointError(f"{source} does not match the model: {what} ({len(missing)} missing, {len(unknown)} unknown)")
    for k, v in tensors.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"{source} does not match the model: {k!r} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    bad = first_non_finite(tensors)
    if bad is not None:
        raise CheckpointError(f"{source} holds NaN/inf values (in {bad!r}): it comes from a diverged run; "
                              f"use an earlier checkpoint")
    module.load_state_dict(tensors, strict=True)


def save_state(state: dict[str, Any], path: Path) -> None:
    torch.save(state, path)


def load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message spans lines and suggests weights_only=False: never
        raise CheckpointError(f"cannot read trainer state {path}: it holds objects other than tensors and "
                              f"plain containers, which are never loaded") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read trainer state {path}: {first}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot read trainer state {path}: not a dictionary")
    return state


def write_checkpoint(
    run_dir: Path, step: int, model_tensors: dict[str, torch.Tensor],
    ema_tensors: dict[str, torch.Tensor] | None, state: dict[str, Any], keep: int = 3,
) -> Path:
    """Write a complete checkpoint atomically, move ``latest`` to it, rotate old ones.

    A failure while writing (a full disk) removes the temporary folder and raises
    :class:`CheckpointWriteError` (one line); the previous checkpoint and ``latest`` are untouched."""
    root = Path(run_dir) / CKPT_DIR
    name = f"step_{step:08d}"
    tmp, old, final = root / f".tmp-{name}-{os.getpid()}", root / f".old-{name}-{os.getpid()}", root / name
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_weights(model_tensors, tmp / "model.safetensors")
        if ema_tensors is not None:
            save_weights(ema_tensors, tmp / "ema.safetensors")
        save_state(state, tmp / "state.pt")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # re-written after a resume from an earlier step
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
        write_text_atomic(root / LATEST, name)
    except (OSError, SafetensorError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
        try:
            last = latest_checkpoint(run_dir)
        except CheckpointError:
            last = None
        note = f"; last good checkpoint: {last}" if last else ""
        raise CheckpointWriteError(f"cannot write checkpoint {name} in {root}: {reason}{note}") from None
    rotate(root, keep, protect=name)
    return final


def rotate(root: Path, keep: int, protect: str) -> None:
    if keep <= 0:
        return
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for p in done[:-keep]:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)


_STEP_NAME = re.compile(r"step_[0-9]{8,}")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``checkpoints/latest`` names, or None when there is no ``latest`` yet.

    It must name a direct child ``step_N`` of ``checkpoints/`` that is, after resolving links, still a
    direct child of it; the text of anything else is never shown (``latest`` may be a link to a
    file that is not ours)."""
    root = Path(run_dir) / CKPT_DIR
    pointer = root / LATEST
    if not pointer.exists() and not pointer.is_symlink():
        return None
    bad = CheckpointError(f"{pointer} does not name a checkpoint folder in {root} (remove it or repair it "
                          f"with the name of a step_* folder)")
    if pointer.is_symlink() or not pointer.is_file():
        raise bad
    try:
        name = pointer.read_bytes()[:64].decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise bad from None
    path = root / name
    if not _STEP_NAME.fullmatch(name) or not path.is_dir() or path.resolve().parent != root.resolve():
        raise bad
    return path


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint folder's name gives (``step_00000500`` -> 500)."""
    return int(path.name.removeprefix("step_"))


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Keep the records of ``metrics.jsonl`` up to ``step`` (those a resumed run will not log again);
    returns how many were dropped. Unreadable lines (a write cut by a kill) are dropped too."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
            keep = isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step
        except json.JSONDecodeError:
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return dropped


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} is not a unigen run directory (no {RUN_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    problems = run_record_problems(record)
    if problems:
        raise CheckpointError("\n".join(f"{path}: {p}" for p in problems))
    return record


def _integer(lo: int, hi: int | None = None) -> Callable[[Any], bool]:
    return lambda x: type(x) is int and x >= lo and (hi is None or x <= hi)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: x is None or check(x)


def _is(*types: type) -> Callable[[Any], bool]:
    return lambda x: type(x) in types


# key -> (check, what it must be); keys marked required must be present. The configs inside are
# checked by their attrs classes when built (unigen.config.from_dict), the data info here.
_RUN_SCHEMA: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    "model": (True, _is(str), "a string (a model id)"),
    "dataset": (True, _is(str), "a string (a dataset id)"),
    "model_config": (True, _is(dict), "an object (the model's config)"),
    "trainer": (True, _is(dict), "an object (the trainer's config)"),
    "data": (True, _is(dict), "an object (the data's shape and kind)"),
    "data_dir": (False, _optional(_is(str)), "a string or null"),
    "format": (False, _integer(1), "an integer >= 1"),
    "plugin": (False, _is(str), "a string"),
    "family": (False, _is(str), "a string"),
}
_DATA_SCHEMA: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    "name": (True, _is(str), "a string"),
    "shape": (True, lambda x: type(x) is list and 1 <= len(x) <= 4 and all(_integer(1, 2**20)(d) for d in x),
              "a list of 1 to 4 positive integers"),
    "kind": (False, _is(str), "a string"),
    "levels": (False, _optional(_integer(2, 2**16)), "an integer in [2, 65536] or null"),
    "num_classes": (False, _optional(_integer(1)), "a positive integer or null"),
    "vocab_size": (False, _optional(_integer(1)), "a positive integer or null"),
    "text_len": (False, _optional(_integer(1)), "a positive integer or null"),
}


def run_record_problems(record: Any) -> list[str]:
    """What is wrong with a run record read from ``run.json`` (types and ranges), one string each."""
    if not isinstance(record, dict):
        return [f"must hold a JSON object, not {type(record).__name__}"]
    problems = _check_table(record, _RUN_SCHEMA, "")
    if isinstance(record.get("data"), dict):
        problems += _check_table(record["data"], _DATA_SCHEMA, "data.")
    return problems


def _check_table(values: dict[str, Any], schema: dict[str, tuple[bool, Callable[[Any], bool], str]],
                 prefix: str) -> list[str]:
    problems = []
    for key, (required, check, what) in schema.items():
        if key not in values:
            if required:
                problems.append(f"{prefix + key!r} is missing")
        elif not check(values[key]):
            problems.append(f"{prefix + key!r} must be {what}, got {json.dumps(values[key])[:40]}")
    return problems


def run_record(
    model: Any, data: Any, trainer: Any, *, dataset: str | None = None, data_dir: str | None = None,
    plugin: str = "", **extra: Any,
) -> dict[str, Any]:
    """The one builder of ``run.json``: the model's id and config, the data it was built for, the
    trainer settings. ``model``: a :class:`unigen.GenerativeModel` (its ``model_id`` and
    ``config``); ``data``: its :class:`unigen.DataInfo`; ``trainer``: a :class:`unigen.TrainerConfig`;
    ``dataset``: the registered dataset id (default: the data's name); ``extra``: more keys."""
    return {
        "format": 1, "model": model.model_id, "model_config": to_dict(model.config),
        "dataset": dataset or data.name, "data_dir": None if data_dir is None else str(data_dir),
        "data": to_dict(data), "trainer": to_dict(trainer), "plugin": plugin, "family": model.family, **extra,
    }


def write_run(run_dir: Path, record: dict[str, Any]) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(run_dir) / RUN_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
