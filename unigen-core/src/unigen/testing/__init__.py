"""The test kit for plugin suites: :func:`quick_train` and :func:`untrained` (small real training runs)
and :func:`example_config` (a model's example config, with the runs it builds on trained first)."""

from .runs import example_config
from .training import quick_train, untrained

__all__ = ["example_config", "quick_train", "untrained"]
