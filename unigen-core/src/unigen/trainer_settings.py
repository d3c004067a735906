"""The trainer's settings: :class:`TrainerConfig`, how a run's settings are decided
(:func:`trainer_config`), what ``--resume`` may change, optimizers, learning-rate schedules, devices.
Re-exported by :mod:`unigen.trainer`."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from attrs import validators as v

from . import config as cfg
from .errors import ConfigError
from .model import GenerativeModel

DEVICE_RE = r"cpu|cuda(:\d+)?|mps"


def _device_name(value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(DEVICE_RE, value):
        raise ValueError(f"'device' must be cpu, cuda, cuda:N or mps, got {value!r}")


AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def _constant(step: int, total: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


def _cosine(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def _linear(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    return max(0.0, 1 - (step - warmup) / max(1, total - warmup))


LR_SCHEDULES: dict[str, Callable[[int, int, int], float]] = {
    "constant": _constant, "cosine": _cosine, "linear": _linear,
}


@attrs.frozen(kw_only=True, init=False)
class TrainerConfig:
    """The trainer's settings. ``explicit`` holds the names given when it was built: those are the
    user's, and :func:`trainer_config` lets a model's ``trainer_defaults`` fill only the others."""

    steps: int = attrs.field(default=1000, validator=[v.instance_of(int), v.ge(0)])
    batch_size: int = attrs.field(default=128, validator=[v.instance_of(int), v.gt(0)])
    lr: float = attrs.field(default=1e-3, validator=[v.instance_of(float), v.gt(0)])
    optimizer: str = attrs.field(default="adam", validator=v.in_(tuple(OPTIMIZERS)))
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), converter=tuple)
    weight_decay: float = attrs.field(default=0.0, validator=[v.instance_of(float), v.ge(0)])
    grad_clip: float = attrs.field(default=0.0, validator=[v.instance_of(float), v.ge(0)])  # 0: off
    lr_schedule: str = attrs.field(default="constant", validator=v.in_(tuple(LR_SCHEDULES)))
    warmup_steps: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    # EMA of the weights, used for sampling and evaluation when present (0: off).
    ema_decay: float = attrs.field(default=0.0, validator=[v.instance_of(float), v.ge(0), v.lt(1)])
    checkpoint_every: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])  # 0: by time only
    # Crash safety by default: a checkpoint after every this many minutes of training as well (0: off).
    checkpoint_minutes: float = attrs.field(default=10.0, validator=[v.instance_of(float), v.ge(0)])
    keep_checkpoints: int = attrs.field(default=3, validator=[v.instance_of(int), v.ge(1)])
    # Losses are read from the device once per log_every steps (one host sync), not every step.
    log_every: int = attrs.field(default=50, validator=[v.instance_of(int), v.gt(0)])
    seed: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(-(2**63)), v.lt(2**64)])  # torch's range
    # cpu, cuda (the current device; under torchrun the rank's local one), cuda:N or mps.
    device: str = attrs.field(default="cpu", validator=lambda _, __, value: _device_name(value))
    # On CUDA: TF32 matmuls and convolutions (Ampere and later; float32 range, 10-bit mantissa).
    tf32: bool = attrs.field(default=True, validator=v.instance_of(bool))
    # Conv models on images: weights and batches in channels-last memory format (faster conv kernels on GPUs).
    channels_last: bool = attrs.field(default=False, validator=v.instance_of(bool))
    # Random horizontal flips of training images (standard for natural images; not for digits or text).
    flip: bool = attrs.field(default=False, validator=v.instance_of(bool))
    # Micro-batches of batch_size per optimizer step: the gradient of a mean loss over K*batch_size examples.
    grad_accum: int = attrs.field(default=1, validator=[v.instance_of(int), v.gt(0)])
    # The loss's forward pass under torch.autocast (bf16/fp16); weights, optimizer state and checkpoints stay fp32.
    precision: str = attrs.field(default="fp32", validator=v.in_(("fp32", "bf16", "fp16")))
    # torch.compile the forward of each of the model's networks (its child modules with parameters).
    compile: bool = attrs.field(default=False, validator=v.instance_of(bool))
    explicit: frozenset[str] = attrs.field(init=False, eq=False, repr=False)

    def __init__(self, **settings: Any) -> None:
        self.__attrs_init__(**settings)
        object.__setattr__(self, "explicit", frozenset(settings))

    @betas.validator
    def _betas(self, attribute: Any, value: Any) -> None:
        if len(value) != 2 or not all(0 <= b < 1 for b in value):
            raise ValueError(f"'betas' must be two numbers in [0, 1), got {value!r}")


def trainer_config(model: GenerativeModel, settings: TrainerConfig | Mapping[str, Any] | None = None) -> TrainerConfig:
    """The one place a run's trainer settings are decided, for the CLI and Python alike: the
    model's ``trainer_defaults`` (read from the instance, so they may depend on its data), then the
    user's ``settings`` on top. For a :class:`TrainerConfig` only the fields it was built with count
    as the user's; a mapping's keys all do."""
    if isinstance(settings, TrainerConfig):
        given = {k: getattr(settings, k) for k in settings.explicit}
    else:
        given = dict(settings or {})
    defaults = {k: tuple(val) if isinstance(val, list) else val for k, val in dict(model.trainer_defaults).items()}
    return cfg.from_dict(TrainerConfig, {**defaults, **given}, what="trainer config")


# What ``--resume`` may change: how long to train (the learning-rate schedule then ends at the new
# step count), how often to log and checkpoint, where to run. Everything else shaped the weights and
# the optimizer state in the checkpoint and is refused by name.
RESUMABLE = frozenset({"steps", "log_every", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "device",
                       "tf32", "channels_last", "compile"})


def resolve_device(name: str) -> torch.device:
    """The torch device of ``--device NAME``; a device this machine lacks is one ConfigError line."""
    if not re.fullmatch(DEVICE_RE, name):
        raise ConfigError(f"--device {name!r}: expected cpu, cuda, cuda:N or mps")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name} was asked for but MPS is not available")
    return device
