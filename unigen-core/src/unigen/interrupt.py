"""Stopping a training cleanly on a signal: the step under way ends, a checkpoint is saved, and the
run stops with one line saying where to continue from (used by :class:`unigen.trainer.Trainer`)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Any

from . import checkpoint as ck
from .errors import Interrupted


class SignalStop:
    """While training: Ctrl-C, SIGTERM (what schedulers and ``timeout`` send) and SIGHUP end the step
    under way, save a checkpoint and stop with one line (:class:`unigen.errors.Interrupted`). A second
    Ctrl-C stops at once. Handlers are installed only in the main thread and restored afterwards."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, names: Sequence[str] = NAMES) -> None:
        self.signums = [getattr(signal, n) for n in names if hasattr(signal, n)]
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "SignalStop":
        if threading.current_thread() is threading.main_thread():
            for s in self.signums:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def interrupted(self, trainer: Any) -> Interrupted:
        assert self.signum is not None  # called only after a signal arrived
        name = signal.Signals(self.signum).name
        last = ck.latest_checkpoint(trainer.run_dir) if trainer.run_dir is not None and trainer.is_main else None
        saved = f"; checkpoint {last} saved, continue with --resume" if last else ""
        return Interrupted(f"stopped by {name} at step {trainer.step}{saved}", self.signum)
