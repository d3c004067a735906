"""Training one model of the bench within its budget."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import attrs

from unigen import Callback, Trainer, TrainerConfig
from unigen import trainer_config as settings_for
from unigen.plugin import GenerativeModel

from .config import MIN_STEPS, BenchConfig, MetricTimeout, TooSlow, time_limit

# --quick: ~25 models in under 10 minutes on 2 CPU cores.
QUICK = {"data": "digits", "minutes": 0.12, "n": 500, "max_sample_steps": 50, "metric_seconds": 10.0}


# -- training -------------------------------------------------------------------------------------
def train(model: Any, data: Any, tc: TrainerConfig, run_dir: Path, c: BenchConfig, host: Any,
          strict: bool = True) -> dict[str, Any]:
    """Train for ``c.steps`` steps or ``c.minutes`` minutes; return steps, seconds and the last losses.
    With a time budget and ``strict``, raise :class:`TooSlow` when fewer than ``MIN_STEPS`` fit in it;
    otherwise train what fits (at least one step)."""
    started = time.perf_counter()
    if c.minutes is None:
        trainer = Trainer(model, data, tc, run_dir=run_dir, quiet=True, host=host, dataset_name=c.data,
                          data_dir=c.data_dir)
        record = trainer.fit()
        rate = trainer.step / max(time.perf_counter() - started, 1e-9)
    else:
        budget = c.minutes * 60
        rate = None
        if strict:  # a throwaway copy measures the step rate of the default config
            probe = copy.deepcopy(model)
            probe.model_id = model.model_id
            clock = _StepClock()
            try:
                with time_limit(budget / 2, "probe"):
                    Trainer(probe, data, _with(tc, steps=3, log_every=3), quiet=True, host=host,
                            callbacks=[clock]).fit()
            except MetricTimeout:
                raise TooSlow(f"three training steps take more than half of the {budget:.0f} s budget") from None
            del probe
            rate = clock.rate()  # steps after the first (which pays for lazy initialisation)
            if rate * budget < MIN_STEPS:
                raise TooSlow(f"only {rate * budget:.0f} training steps fit in the {budget:.0f} s budget")
        steps, record, trainer = 0, {}, None
        for _ in range(5):  # the run, then extensions by exact resume while time is left
            remaining = budget - (time.perf_counter() - started)
            extra = 1 if rate is None else int(remaining * rate * 0.95)  # no estimate yet: one step
            if steps and (extra < max(1, 0.05 * steps) or remaining < 0.1 * budget):
                break
            steps += max(1, extra)
            t0 = time.perf_counter()
            trainer = Trainer(model, data, _with(tc, steps=steps, log_every=max(1, min(50, steps))),
                              run_dir=run_dir, quiet=True, host=host, dataset_name=c.data, data_dir=c.data_dir)
            done = trainer.resume() and trainer.step
            record = trainer.fit()
            rate = (steps - (done or 0)) / max(time.perf_counter() - t0, 1e-6)
    seconds = time.perf_counter() - started
    model.eval()
    losses = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("loss/")}
    assert trainer is not None  # the loop runs at least once
    return {"steps": trainer.step, "seconds": seconds, "final_loss": losses, "batch_size": tc.batch_size,
            "steps_per_sec": rate}


class _StepClock(Callback):
    def __init__(self) -> None:
        self.times = [time.perf_counter()]

    def on_step_end(self, trainer: Any, step: int) -> None:
        self.times.append(time.perf_counter())

    def rate(self) -> float:
        t = self.times[2:] if len(self.times) > 2 else self.times
        return (len(t) - 1) / max(t[-1] - t[0], 1e-9) if len(t) > 1 else 0.0


def _with(tc: TrainerConfig, **changes: Any) -> TrainerConfig:
    return attrs.evolve(tc, **changes)


def trainer_config(model: GenerativeModel, c: BenchConfig) -> TrainerConfig:
    """The bench's budget over the built model's ``trainer_defaults`` (read from the instance: they may
    depend on the data, e.g. a paper's 2-D toy settings), through the core's one rule."""
    values: dict[str, Any] = dict(seed=c.seed, device=c.device, steps=c.steps or 1, checkpoint_every=0,
                                  keep_checkpoints=1)
    if c.batch_size is not None:
        values["batch_size"] = c.batch_size
    return settings_for(model, values)


