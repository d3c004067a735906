"""Helpers for plugin test suites: quick training runs and sample-quality checks.

These are small, real training runs (the generic trainer on real data), used by every family's
"it learns" tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..api import build_model, load_dataset
from ..data import Dataset
from ..model import GenerativeModel
from ..trainer import Trainer, TrainerConfig


def quick_train(
    model_id: str, data: str | Dataset = "digits", *, steps: int = 300, batch_size: int = 64, seed: int = 0,
    config: Any = None, overrides: Iterable[str] = (), trainer: dict[str, Any] | None = None, run_dir: Any = None,
    model: GenerativeModel | None = None,
) -> GenerativeModel:
    """Build (or take) a model, train it ``steps`` steps with the generic trainer, return it in eval mode."""
    dataset = load_dataset(data) if isinstance(data, str) else data
    torch.manual_seed(seed)
    if model is None:
        model = build_model(model_id, dataset.info, config, overrides=overrides)
    spec_defaults = dict(model.trainer_defaults)
    spec_defaults.update(trainer or {})
    spec_defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in spec_defaults.items()}
    cfg = TrainerConfig(**{"steps": steps, "batch_size": batch_size, "seed": seed, "log_every": max(1, steps), **spec_defaults})
    Trainer(model, dataset, cfg, run_dir=run_dir, quiet=True).fit()
    return model.eval()


def untrained(model_id: str, data: str | Dataset = "digits", *, seed: int = 0, config: Any = None,
              overrides: Iterable[str] = ()) -> GenerativeModel:
    dataset = load_dataset(data) if isinstance(data, str) else data
    torch.manual_seed(seed)
    return build_model(model_id, dataset.info, config, overrides=overrides).eval()
