"""One writer per run directory: an advisory lock on ``RUN/.lock`` held for the whole training.

The lock is ``fcntl.flock`` on a file that holds the holder's ``pid@host``: the kernel drops it when
the holder exits in any way (``kill -9`` included), so a lock file left behind by a dead process is
taken over, with a message naming it. A second trainer on a live run is refused with one line
naming the holder. Readers (``unigen sample``/``eval``) take no lock: a checkpoint becomes visible
only once complete (:mod:`unigen.checkpoint`). The file is removed on release; since another process
may have opened it just before, a lock is held only when the file locked is still the one at the path.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from .errors import UnigenError

LOCK_FILE = ".lock"


class RunLocked(UnigenError):
    """Another process is training into the same run directory."""


def check_run_dir_target(out: Path) -> None:
    """A run directory ``out`` can be used: a directory, or a path whose nearest existing parent is a
    writable directory (checked before any work, so a mistake costs no training)."""
    if out.exists() and not out.is_dir():
        raise UnigenError(f"--out {out} exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UnigenError(f"--out {out} cannot be created: {parent} is not a writable directory")


def _holder(text: str) -> tuple[int | None, str]:
    pid, _, host = text.strip().partition("@")
    return (int(pid) if pid.isdigit() else None), host


class RunLock:
    """``with RunLock(run_dir): ...`` creates ``run_dir`` and holds its lock inside the block."""

    def __init__(self, run_dir: str | Path, log=None) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.log = log or (lambda msg: print(f"unigen: {msg}", file=sys.stderr))
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UnigenError(f"cannot create the run directory {self.path.parent}: {exc.strerror or exc}") from None
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UnigenError(f"cannot open the lock file {self.path}: {exc.strerror or exc} (remove it if "
                                  f"no training runs there)") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 256, 0).decode("utf-8", "replace")
                os.close(fd)
                pid, host = _holder(text)
                who = f"pid {pid} on {host}" if pid is not None else "another process"
                raise RunLocked(f"{self.path.parent} is being trained by {who}; wait for it to finish "
                                f"or choose another --out") from None
            except OSError as exc:  # a file system without locks (some network ones): say so, go on
                self.log(f"cannot lock {self.path} ({exc.strerror or exc}); make sure no other training uses "
                         f"{self.path.parent}")
                break
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed it between our open and our lock: again
        stale = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
        if stale:
            pid, host = _holder(stale)
            who = f"pid {pid} on {host}" if pid is not None else "a process"
            self.log(f"taking over the lock of {self.path.parent} left by {who}, which has ended")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
