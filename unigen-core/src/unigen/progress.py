"""Progress bars (tqdm) on a terminal: ``unigen sample`` over its chunks and each chunk's solver
steps, ``unigen eval`` over its metrics. Off a terminal, or when nobody asked, nothing is drawn and
the loops run unwrapped.

A sampler's step loop opts in with :func:`track` (``for t in track(grid, total=steps)``): it costs
one context-variable read per sampling call when no bar was asked for.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
_solver_bars: ContextVar[bool] = ContextVar("unigen_solver_bars", default=False)


def on_terminal() -> bool:
    """Whether bars would be seen: stderr is a terminal."""
    return sys.stderr.isatty()


def bar(total: int, desc: str, unit: str, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, mininterval=0.2, **kwargs)


@contextlib.contextmanager
def solver_bars(enabled: bool = True) -> Iterator[None]:
    """Inside this block, step loops wrapped by :func:`track` show a bar of their own."""
    token = _solver_bars.set(enabled)
    try:
        yield
    finally:
        _solver_bars.reset(token)


def track(iterable: Iterable[T], total: int | None = None, desc: str = "solver steps") -> Iterable[T]:
    """``iterable`` itself, or wrapped in a transient tqdm bar inside :func:`solver_bars`."""
    if not _solver_bars.get():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="step", leave=False, position=1, dynamic_ncols=True,
                mininterval=0.2)
