"""Looking at run directories: ``unigen plot RUN`` (the loss curves of every group from
``metrics.jsonl``) and ``unigen runs [DIR]`` (every run under DIR with its model, data, steps done,
last losses and latest eval figures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoint import EVAL_FILE, RUN_FILE, checkpoint_step, latest_checkpoint, read_run
from .errors import CheckpointError, UnigenError

LOSS_PLOT = "losses.png"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN/metrics.jsonl`` (a torn last line, from a killed run, is skipped)."""
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Draw the loss of every group against the step into a PNG (default ``RUN/losses.png``);
    return the file and the groups drawn, one curve each."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UnigenError("unigen plot needs matplotlib: pip install 'unigen-core[plots]'") from None
    records = read_metrics(run_dir)
    groups = sorted({k for r in records for k in r if k.startswith("loss/")})
    if not groups:
        raise UnigenError(f"{run_dir} has no logged losses yet (metrics.jsonl)")
    out = Path(out) if out is not None else run_dir / LOSS_PLOT
    if out.suffix != ".png":
        raise UnigenError(f"--out must end in .png, got {out.name!r}")
    fig, ax = plt.subplots(figsize=(7, 4))
    for g in groups:
        points = [(r["step"], r[g]) for r in records if g in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=g.split("/", 1)[1], marker="." if len(points) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over each log interval)")
    ax.set_title(f"{record.get('model', '?')} on {record.get('dataset', '?')}: {run_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend(title="group")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    drawn = [str(line.get_label()) for line in ax.get_lines()]
    plt.close(fig)
    return out, drawn


def summary(run_dir: Path) -> dict[str, Any]:
    """One run's row for ``unigen runs``."""
    row: dict[str, Any] = {"run": str(run_dir)}
    try:
        record = read_run(run_dir)
        row.update(model=record.get("model", "?"), data=record.get("dataset", "?"))
        total = (record.get("trainer") or {}).get("steps")
    except CheckpointError as exc:
        return {**row, "model": "?", "data": "?", "steps": "?", "losses": "", "eval": str(exc)}
    try:
        ckpt = latest_checkpoint(run_dir)
    except CheckpointError:
        ckpt = None
    done = checkpoint_step(ckpt) if ckpt is not None else 0
    row["steps"] = f"{done}/{total}" if total is not None else str(done)
    metrics = read_metrics(run_dir)
    last = metrics[-1] if metrics else {}
    row["losses"] = {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("loss/")}
    try:
        ev = json.loads((run_dir / EVAL_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        ev = {}
    row["eval"] = {k: v for k, v in ev.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("ema",)}
    if ev.get("checkpoint"):
        row["eval_checkpoint"] = ev["checkpoint"]
    return row


def find_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every run directory (one holding ``run.json``) under ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise UnigenError(f"no such directory: {root}")
    found = sorted({p.parent for p in root.rglob(RUN_FILE) if "checkpoints" not in p.parent.parts})
    return [summary(d) for d in found]


def format_row(row: dict[str, Any]) -> dict[str, str]:
    def figures(values: Any, digits: int = 4) -> str:
        if not isinstance(values, dict):
            return str(values)
        return ", ".join(f"{k}={v:.{digits}g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

    return {"run": row["run"], "model": row["model"], "data": row["data"], "steps": row["steps"],
            "last losses": figures(row["losses"]), "eval": figures(row["eval"])}
