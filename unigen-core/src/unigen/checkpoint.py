"""Run directories and atomic checkpoints.

A run directory holds::

    run.json                      model id, model config, data info, trainer config (JSON)
    metrics.jsonl                 one JSON record per logged step
    checkpoints/step_00000500/    model.safetensors, ema.safetensors (optional), state.pt
    checkpoints/latest            the name of the newest complete checkpoint

A checkpoint is written into a temporary folder, flushed, and renamed into place; only then does
``latest`` move (itself written to a temporary file and renamed). A crash or kill at any moment
therefore leaves the previous checkpoint loadable. Weights are safetensors; ``state.pt`` holds only
tensors and plain containers and is read with ``torch.load(weights_only=True)``: loading never
executes code.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

RUN_FILE = "run.json"
CKPT_DIR = "checkpoints"
LATEST = "latest"


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
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


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


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load tensors into a module, refusing unknown/missing keys and wrong shapes by name."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unknown = sorted(set(tensors) - set(own))
    if missing or unknown:
        what = f"missing {missing[0]!r}" if missing else f"unknown {unknown[0]!r}"
        raise CheckpointError(f"{source} does not match the model: {what} ({len(missing)} missing, {len(unknown)} unknown)")
    for k, v in tensors.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"{source} does not match the model: {k!r} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    module.load_state_dict(tensors, strict=True)


def save_state(state: dict[str, Any], path: Path) -> None:
    torch.save(state, path)


def load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read trainer state {path}: {first}") from None


def write_checkpoint(
    run_dir: Path, step: int, model_tensors: dict[str, torch.Tensor],
    ema_tensors: dict[str, torch.Tensor] | None, state: dict[str, Any], keep: int = 3,
) -> Path:
    """Write a complete checkpoint atomically, move ``latest`` to it, rotate old ones."""
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
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
    final = root / name
    if final.exists():  # re-written after a resume from an earlier step
        old = root / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    write_text_atomic(root / LATEST, name)
    rotate(root, keep, protect=name)
    return final


def rotate(root: Path, keep: int, protect: str) -> None:
    if keep <= 0:
        return
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for p in done[:-keep]:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / CKPT_DIR
    try:
        name = (root / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    path = root / name
    if not name.startswith("step_") or not path.is_dir():
        raise CheckpointError(f"{root / LATEST} names {name!r}, which is not a checkpoint")
    return path


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} is not a unigen run directory (no {RUN_FILE})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def write_run(run_dir: Path, record: dict[str, Any]) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(run_dir) / RUN_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
