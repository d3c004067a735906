"""Python entry points: build a model, load data, load a trained run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from . import config as cfg
from .checkpoint import EVAL_FILE, latest_checkpoint, load_into, load_weights, read_run, write_text_atomic
from .data import Dataset
from .data.sources import check_data_dir, dataset_spec
from .drawing import sample_chunked
from .errors import CheckpointError, ConfigError, DataError, UnigenError
from .metrics import EvalContext
from .model import DataInfo, GenerativeModel
from .plugins import Host, default_host


def load_dataset(
    name: str, split: str = "train", data_dir: str | None = None, *, image_size: int | None = None,
    channels: int | None = None, stream: bool | None = None, host: Host | None = None,
) -> Dataset:
    """A dataset split: a registered id (``load_dataset("digits")``) or your own data, named as on the
    command line (``load_dataset("./pngs", image_size=32)``, ``"points.npy"``, ``"hf:PATH"``; see
    :mod:`unigen.data.sources`). For a tensor or a torch Dataset: :func:`unigen.data.from_tensor`,
    :func:`unigen.data.from_torch_dataset`."""
    spec = dataset_spec(name, host or default_host(), image_size=image_size, channels=channels, stream=stream)
    check_data_dir(spec, data_dir)
    return spec.load(split, data_dir)


def model_config(model_id: str, values: Mapping[str, Any] | None = None, *, host: Host | None = None) -> Any:
    """The model's config class built from ``values`` (validated)."""
    spec = (host or default_host()).models[model_id]
    return cfg.from_dict(spec.model_cls.Config, dict(values or {}), what=f"{model_id} config")


def build_model(
    model_id: str, data: DataInfo | Dataset, config: Any = None, *, overrides: Iterable[str] = (),
    host: Host | None = None,
) -> GenerativeModel:
    """Build a registered model for ``data``. ``config``: a config instance, a dict, or None."""
    spec = (host or default_host()).models[model_id]
    info = data.info if isinstance(data, Dataset) else data
    kinds = spec.model_cls.data_kinds
    if not set(info.kinds) & set(kinds):  # the model's declared data_kinds are a contract, not a hint
        raise DataError(f"{model_id} does not take {' or '.join(info.kinds)} data ({info.name!r}); "
                        f"it takes {', '.join(kinds)} data")
    if config is None or isinstance(config, Mapping):
        config = cfg.from_dict(spec.model_cls.Config, dict(config or {}), what=f"{model_id} config")
    elif not isinstance(config, spec.model_cls.Config):
        raise ConfigError(f"{model_id} expects a {spec.model_cls.Config.__qualname__}, got {type(config).__qualname__}")
    if overrides:
        config = cfg.apply_overrides({"model": config}, overrides)["model"]
    try:
        model = spec.model_cls(config, info)
    except (RuntimeError, MemoryError, OverflowError) as exc:  # e.g. z_dim=10**9: more memory than there is
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot build {model_id} with this config: {first}") from None
    model.model_id = spec.id
    model.host = host or default_host()
    return model


@attrs.frozen
class Run:
    """A trained run: the model (weights loaded), its record and the checkpoint it came from."""

    model: GenerativeModel
    record: dict[str, Any]
    checkpoint: Path
    ema: bool

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parent.parent

    def sample(self, n: int, steps: int | None = None, *, seed: int = 0, chunk: int = 500,
               host: Host | None = None, progress: bool = False) -> torch.Tensor:
        """``n`` samples (drawn ``chunk`` at a time) with ``steps`` solver steps (None: the model's);
        ``progress``: tqdm bars over the samples and the solver steps."""
        if n <= 0:
            raise UnigenError(f"--n must be positive, got {n}")
        torch.manual_seed(seed)
        x = sample_chunked(self.model, n, steps, chunk, host=host, progress=progress)
        assert x is not None  # no out file: the samples are returned
        return x

    def eval(
        self, metrics: str | Iterable[str] | None = None, *, n: int = 1000, seed: int = 0, data_dir: str | None = None,
        sample_steps: int | None = None, evaluator: str | None = None, log: Any = None, host: Host | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Compute ``metrics`` (ids, e.g. ``"nll,fid"``; None: the model's ``default_metrics``) and
        save them into the run directory's ``eval.json`` (merged with earlier results of the same
        checkpoint), as ``unigen eval`` does."""

        host = host or default_host()
        if metrics is None:
            names = list(self.model.default_metrics)
        else:
            names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
        specs = [host.metrics[m] for m in names]
        if n <= 0:
            raise UnigenError(f"--n must be positive, got {n}")
        ctx = EvalContext(model=self.model, record=self.record, host=host, n=n, seed=seed, data_dir=data_dir,
                          steps=sample_steps, evaluator=evaluator, log=log)
        result: dict[str, Any] = {"model": self.record["model"], "dataset": self.record["dataset"],
                                  "checkpoint": self.checkpoint.name, "ema": self.ema}
        bar = None
        if progress:
            from .progress import bar as make_bar

            bar = make_bar(len(specs), "eval", "metric")
        for spec in specs:
            if bar is not None:
                bar.set_postfix_str(spec.id)
            result.update(spec.compute(ctx))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        path = self.run_dir / EVAL_FILE
        try:
            old = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            old = {}
        saved = {**old, **result} if old.get("checkpoint") == result["checkpoint"] else result
        write_text_atomic(path, json.dumps(saved, indent=2, default=str) + "\n")
        return result


def load_run(
    run_dir: str | Path, *, ema: bool | None = None, device: str = "cpu", overrides: Iterable[str] = (),
    host: Host | None = None,
) -> Run:
    """Load the newest checkpoint of a run. ``ema``: None uses EMA weights when the run has them.
    ``overrides``: ``key=value`` changes to the model config that leave the weights valid (a
    sampler, a truncation, a prompt)."""
    record = read_run(run_dir)
    try:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in record["data"].items()}
        info = DataInfo(**fields)
        model_id, values = record["model"], record["model_config"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{run_dir}/run.json is incomplete or malformed: {exc}") from None
    model = build_model(model_id, info, values, overrides=overrides, host=host)
    ckpt = latest_checkpoint(Path(run_dir))
    if ckpt is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet (train it first)")
    use_ema = (ckpt / "ema.safetensors").exists() if ema is None else ema
    name = "ema.safetensors" if use_ema else "model.safetensors"
    if not (ckpt / name).exists():
        raise CheckpointError(f"{ckpt} has no {name}")
    load_into(model, load_weights(ckpt / name), ckpt / name)
    model.to(torch.device(device)).eval()
    return Run(model=model, record=record, checkpoint=ckpt, ema=use_ema)
