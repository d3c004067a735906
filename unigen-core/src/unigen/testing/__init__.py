"""Helpers for plugin test suites: :func:`quick_train` and :func:`untrained` (small real training runs)."""

from .training import quick_train, untrained

__all__ = ["quick_train", "untrained"]
