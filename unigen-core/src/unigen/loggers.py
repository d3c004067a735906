"""Training loggers: trainer callbacks found by name (``unigen train --logger ID``, repeatable).

A logger receives every record the trainer logs (each loss group ``loss/G``, ``lr``,
``steps_per_sec`` and ``grad_norm/G``: the gradient norm of group G at the logged step) through
:meth:`Logger.log_scalars`, and every picture (the ``--sample-every`` grids) through
:meth:`Logger.log_image`. Loggers are registered through ``unigen_register_loggers`` with a
:class:`unigen.registry.LoggerSpec`; built in:

``jsonl``        ``RUN/metrics.jsonl``, one JSON record per log step (always on when there is a run dir)
``csv``          ``RUN/metrics.csv``, one row per log step
``tensorboard``  event files in ``RUN/tensorboard`` (``torch.utils.tensorboard``; needs ``tensorboard``)
``wandb``        Weights & Biases under ``RUN/wandb``, offline unless ``WANDB_MODE`` says otherwise
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .callbacks import Callback
from .checkpoint import write_text_atomic
from .errors import UnigenError
from .registry import LoggerSpec


class Logger(Callback):
    """A callback that receives scalars and pictures; override :meth:`log_scalars`,
    :meth:`log_image`, and :meth:`start`/:meth:`close` to open and close what it writes to."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def start(self, trainer: Any) -> None:
        """Called when training starts (the run directory exists): open files, connections."""

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """``scalars``: ``loss/G``, ``lr``, ``steps_per_sec``, ``grad_norm/G``, ... at ``step``."""

    def log_image(self, step: int, name: str, image: np.ndarray) -> None:
        """``image``: uint8, (H, W) grey or (H, W, 3) colour."""

    def close(self) -> None:
        """Called when training ends: flush and close."""

    # -- the callback interface ---------------------------------------------------------------
    def on_train_start(self, trainer: Any) -> None:
        self.start(trainer)

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        self.log_scalars(int(record["step"]), {k: float(v) for k, v in record.items() if k != "step"})

    def on_image(self, trainer: Any, name: str, image: np.ndarray) -> None:
        self.log_image(trainer.step, name, image)

    def on_train_end(self, trainer: Any) -> None:
        self.close()


class JsonlLogger(Logger):
    """``RUN/metrics.jsonl``: the record of each log step as one JSON line."""

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")


class CsvLogger(Logger):
    """``RUN/metrics.csv``: one row per log step; the columns are those of the first row (a resumed
    run keeps the file's header and drops the rows after the checkpoint it resumes from, as
    ``metrics.jsonl`` does, so no step appears twice)."""

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(run_dir)
        self.path = self.run_dir / "metrics.csv"
        self.columns: list[str] | None = None

    def start(self, trainer: Any) -> None:
        if not self.path.exists():
            return
        with open(self.path, newline="") as fh:
            rows = list(csv.reader(fh))
        kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= trainer.step]
        if len(kept) != len(rows):
            buf = io.StringIO()
            csv.writer(buf).writerows(kept)
            write_text_atomic(self.path, buf.getvalue())

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        if self.columns is None and self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as fh:
                self.columns = next(csv.reader(fh))
        new = self.columns is None
        columns = self.columns = ["step", *scalars] if self.columns is None else self.columns
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({"step": step, **scalars})


def _needs(module: str, logger: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnigenError(f"--logger {logger} needs the {extra} package: pip install 'unigen-core[{extra}]'") from None


class TensorBoardLogger(Logger):
    """Event files in ``RUN/tensorboard`` through ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(run_dir)
        _needs("tensorboard", "tensorboard", "tensorboard")
        self.writer: Any = None

    def start(self, trainer: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=trainer.step or None)

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def log_image(self, step: int, name: str, image: np.ndarray) -> None:
        self.writer.add_image(name, image, step, dataformats="HW" if image.ndim == 2 else "HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbLogger(Logger):
    """Weights & Biases in ``RUN/wandb``, offline by default (``WANDB_MODE=online`` to sync);
    the run record is the run's config, ``WANDB_PROJECT`` its project (default ``unigen``)."""

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(run_dir)
        self.wandb = _needs("wandb", "wandb", "wandb")
        self.run: Any = None

    def start(self, trainer: Any) -> None:
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "unigen"), dir=str(self.run_dir),
                                   name=self.run_dir.name, config=trainer.run_record(),
                                   mode=os.environ.get("WANDB_MODE", "offline"))

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def log_image(self, step: int, name: str, image: np.ndarray) -> None:
        self.run.log({name: self.wandb.Image(image)}, step=step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()


BUILTIN = (
    LoggerSpec(id="jsonl", create=JsonlLogger, description="RUN/metrics.jsonl (always on)"),
    LoggerSpec(id="csv", create=CsvLogger, description="RUN/metrics.csv"),
    LoggerSpec(id="tensorboard", create=TensorBoardLogger, description="TensorBoard event files in RUN/tensorboard"),
    LoggerSpec(id="wandb", create=WandbLogger, description="Weights & Biases, offline unless WANDB_MODE says otherwise"),
)
