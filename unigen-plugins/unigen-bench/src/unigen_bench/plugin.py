"""Entry point of unigen-bench: its two commands and the ``throughput`` metric."""

from __future__ import annotations

from unigen.plugin import MetricSpec, hookimpl

from . import commands
from .throughput import throughput


@hookimpl
def unigen_register_commands(subparsers):
    commands.add_bench(subparsers)
    commands.add_speed(subparsers)


@hookimpl
def unigen_register_metrics(register):
    register(MetricSpec(id="throughput", compute=throughput,
                        description="samples/sec and training steps/sec (warm-up, median of repeats)"))
