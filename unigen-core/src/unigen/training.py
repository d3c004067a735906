"""One training entry point for the command line and for Python: ``unigen train`` is
``unigen.train(...)`` with its flags as keyword arguments, so the two write the same run directory.

Settings come from, in order (later wins): a TOML file or mapping (``[model]`` and ``[trainer]``
tables, or flat keys), ``sets`` (``key=value`` strings, ``model.key``/``trainer.key`` to qualify),
and keyword ``settings``. The model's trainer defaults sit under all of them
(:func:`unigen.trainer.trainer_config`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import config as cfg
from . import ops
from .api import build_model, load_run
from .callbacks import Callback
from .checkpoint import clean_stale, latest_checkpoint, read_run
from .data.sources import check_data_dir, dataset_spec
from .distributed import DistributedContext
from .errors import ConfigError, UnigenError
from .images import picture
from .plugins import Host, default_host
from .registry import DatasetSpec
from .runlock import RunLock, check_run_dir_target
from .trainer import RESUMABLE, Trainer, TrainerConfig, resolve_device, trainer_config


def _settings(config: str | Path | Mapping[str, Any] | None, sets: Iterable[str],
              settings: Mapping[str, Any]) -> list[str | tuple[str, Any]]:
    table = cfg.load_toml(config) if isinstance(config, (str, Path)) else dict(config or {})
    return [*cfg.table_items(table), *sets, *((k, v) for k, v in settings.items() if v is not None)]


def _split(spec: Any, items: Sequence[str | tuple[str, Any]], base_model: Any, base_trainer: dict[str, Any],
           ) -> tuple[Any, dict[str, Any]]:
    """The model config and the user's trainer settings (only those given, so that the model's
    trainer defaults fill the rest)."""
    changed = cfg.apply_overrides({"model": base_model, "trainer": TrainerConfig(**base_trainer)}, items)
    tables = {"model": cfg.fields_of(spec.model_cls.Config), "trainer": cfg.fields_of(TrainerConfig)}
    named = [cfg.route(tables, cfg.split_assignment(i)[0] if isinstance(i, str) else i[0]) for i in items]
    given = {**base_trainer, **{k: getattr(changed["trainer"], k) for table, k in named if table == "trainer"}}
    return changed["model"], given


def train(
    model: str, data: str | DatasetSpec = "digits", *, out: str | Path | None = None, resume: bool = False,
    config: str | Path | Mapping[str, Any] | None = None, sets: Iterable[str] = (), data_dir: str | None = None,
    loggers: Iterable[str] = (), sample_every: int = 0, callbacks: Sequence[Callback] = (), quiet: bool = False,
    host: Host | None = None, **settings: Any,
) -> Any:
    """Train registered model ``model`` on ``data`` (a dataset id, your own data as ``PATH`` or
    ``KIND:PATH``, or a :class:`DatasetSpec`) into run directory ``out`` (default
    ``runs/MODEL-DATA``) and return the trained run (:class:`unigen.Run`: ``.model``,
    ``.sample(n)``, ``.eval(metrics)``, ``.run_dir``), e.g. ``unigen.train("ddpm", steps=2000)``.

    ``settings``: model or trainer settings by name (``steps=2000, z_dim=16``); ``loggers``: logger
    ids (``"csv"``, ``"tensorboard"``, ``"wandb"``; :mod:`unigen.loggers`); ``sample_every``: a grid
    of samples from fixed noise into ``RUN/samples`` and to the loggers every N steps; ``resume``: continue
    the run in ``out`` from its newest checkpoint. Nothing is written before every setting, the data
    and the model have been checked.
    """

    host = host or default_host()
    spec = host.models[model]
    data_spec = data if isinstance(data, DatasetSpec) else dataset_spec(data, host)
    check_data_dir(data_spec, data_dir)  # unknown ids and bad files fail here, before anything is written
    name = data_spec.id if data_spec.id in host.datasets else data_spec.load("train").info.name
    out = Path(out or f"runs/{model}-{name}")
    check_run_dir_target(out)
    items = _settings(config, sets, settings)
    if resume and (out / "run.json").exists():
        record = read_run(out)
        if record["model"] != model or record["dataset"] != data_spec.id:
            raise UnigenError(f"{out} holds a {record['model']} run on {record['dataset']}, not {model} on {data_spec.id}")
        old: Any = cfg.from_dict(spec.model_cls.Config, record["model_config"], what=f"{model} config")
        recorded = {k: tuple(v) if isinstance(v, list) else v for k, v in record["trainer"].items()}
        model_cfg, given = _split(spec, items, old, recorded)
        fixed = [k for k in cfg.fields_of(type(old)) if getattr(model_cfg, k) != getattr(old, k)]
        fixed += [k for k, v in given.items() if k not in RESUMABLE and v != recorded.get(k, v)]
        if fixed and latest_checkpoint(out) is not None:  # with no checkpoint yet, nothing was made with them
            raise ConfigError(f"--resume cannot change {', '.join(sorted(fixed))} (the weights and optimizer state "
                              f"of {out} were made with the recorded values); it may change "
                              f"{', '.join(sorted(RESUMABLE))}; choose another --out to train with new settings")
        data_dir = data_dir or record.get("data_dir")
    else:
        if (out / "run.json").exists():
            raise UnigenError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        model_cfg, given = _split(spec, items, spec.model_cls.Config(), {})
    device = resolve_device(str(given.get("device", "cpu")))
    dist = DistributedContext.from_env(device.type)
    train_set = data_spec.load("train", data_dir)
    train_set.check_finite()
    torch.manual_seed(given.get("seed", TrainerConfig().seed))
    net = build_model(model, train_set.info, model_cfg, host=host)
    extra = make_callbacks(host, loggers, out, sample_every=sample_every) if dist.is_main else []
    trainer = Trainer(net, train_set, trainer_config(net, given), run_dir=out, quiet=quiet, host=host,
                      dataset_name=data_spec.id, data_dir=data_dir, callbacks=[*callbacks, *extra], rank=dist.rank,
                      world_size=dist.world_size)
    # Everything that can fail on a user's mistake has run: only now is the run directory written,
    # by one process at a time (rank 0 holds its lock; a failed start leaves no run.json behind).
    lock = RunLock(out) if dist.is_main else contextlib.nullcontext()
    try:
        with lock:
            if dist.is_main:
                if not resume and (out / "run.json").exists():
                    raise UnigenError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
                clean_stale(out)
            resumed = trainer.resume() if resume else False
            if dist.is_main and not quiet:
                what = f"resumed at step {trainer.step}" if resumed else "from scratch"
                print(f"training {model} on {data_spec.id} ({len(train_set)} examples) {what} -> {out}",
                      file=sys.stderr)
            trainer.fit()  # writes run.json (rank 0) before the first step
    finally:
        dist.close()
    return load_run(out, device=trainer.config.device, host=host) if dist.is_main else None


class SampleGrid(Callback):
    """Every ``every`` steps, ``n`` samples drawn from the same seed (so successive grids show the
    same noise maturing) are written to ``RUN/samples/step_NNNNNNNN.png`` and sent to every
    callback's ``on_image``. Drawn with the live weights, in eval mode, without touching the
    training random state (so a run with grids is the run without them)."""

    def __init__(self, run_dir: str | Path, every: int, n: int = 64, seed: int = 0) -> None:
        if every <= 0:
            raise UnigenError(f"--sample-every must be positive, got {every}")
        self.run_dir, self.every, self.n, self.seed = Path(run_dir), every, n, seed

    def on_step_end(self, trainer: Any, step: int) -> None:
        if step % self.every == 0:
            self.draw(trainer)

    def draw(self, trainer: Any) -> np.ndarray | None:
        model = trainer.model
        was_training = model.training
        model.eval()
        cuda = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            torch.manual_seed(self.seed)
            x = ops.sample(model, self.n, host=trainer.host)
        model.train(was_training)
        image = picture(x.detach().cpu())
        if image is None:  # samples that are not pictures (tokens, long vectors)
            return None
        folder = self.run_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"step_{trainer.step:08d}.png")
        trainer.log_image("samples", image)
        return image


def make_callbacks(host: Any, loggers: Iterable[str], run_dir: str | Path, *, sample_every: int = 0) -> list[Callback]:
    """The callbacks of ``--logger ID ...`` (each once; an unknown id fails before anything is
    written) and of ``--sample-every N``."""
    out: list[Callback] = [host.loggers[name].create(Path(run_dir)) for name in dict.fromkeys(loggers)]
    if sample_every:
        out.append(SampleGrid(run_dir, sample_every))
    return out
