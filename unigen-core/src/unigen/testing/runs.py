"""The runs a model builds on, made by the test kit: a model declares them in ``needs_runs`` (config
field -> model id, e.g. ``{"autoencoder": "vae"}``) and :func:`example_config` trains a tiny run of
each (with that model's own example config) before the model's ``example_config`` points at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import checkpoint
from ..errors import UnigenError
from ..model import DataInfo, GenerativeModel
from ..plugins import Host, default_host
from ..registry import provider_of
from .training import quick_train


def example_config(model_cls: type[GenerativeModel], data: DataInfo, workdir: Any, *, host: Host | None = None, steps: int = 5) -> Any:
    """``model_cls.example_config(data, workdir)``, after training in ``workdir/<field>`` a tiny run of
    every model the class declares in ``needs_runs``. A needed model that no installed plugin provides is
    a :class:`unigen.UnigenError` naming what to install (the contract test skips that model)."""
    host = host or default_host()
    workdir = Path(workdir)
    for field, model_id in model_cls.needs_runs.items():
        run = workdir / field
        if checkpoint.latest_checkpoint(run) is not None:
            continue
        if model_id not in host.models:
            hint = provider_of("models", model_id)
            raise UnigenError(f"{model_cls.__name__} builds on a {model_id!r} run, which no installed plugin "
                              f"provides" + (f": pip install {hint}" if hint else ""))
        spec = host.models[model_id]
        needed = example_config(spec.model_cls, data, workdir / f".{field}", host=host, steps=steps)
        dataset = data.name if data.name in host.datasets else ("digits" if data.is_image else "moons")
        quick_train(model_id, dataset, steps=steps, batch_size=16, config=needed, run_dir=run)  # writes run.json
    return model_cls.example_config(data, workdir)
