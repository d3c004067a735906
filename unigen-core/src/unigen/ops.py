"""The five operations, called through the hooks so that plugins can override or wrap them.

Every caller in the core (trainer, sampler, metrics, CLI) uses these functions, never the model's
methods directly.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .data import Batch
from .model import GenerativeModel
from .plugins import Host, default_host


def _host(host: Host | None, model: GenerativeModel) -> Host:
    """The host given, else the one the model was built with, else the default host."""
    return host or getattr(model, "host", None) or default_host()


def forward(model: GenerativeModel, x: Tensor, t: Tensor | None = None, *, host: Host | None = None) -> Any:
    return _host(host, model).call("unigen_forward", model=model, x=x, t=t)


def reverse(model: GenerativeModel, z: Tensor, steps: int | None = None, *, host: Host | None = None) -> Tensor:
    return _host(host, model).call("unigen_reverse", model=model, z=z, steps=steps)


def loss(model: GenerativeModel, batch: Batch, group: str | None = None, *, host: Host | None = None) -> Any:
    return _host(host, model).call("unigen_loss", model=model, batch=batch, group=group)


def sample(model: GenerativeModel, num_samples: int, steps: int | None = None, *, host: Host | None = None) -> Tensor:
    return _host(host, model).call("unigen_sample", model=model, num_samples=num_samples, steps=steps)


def logprob(model: GenerativeModel, x: Tensor, *, host: Host | None = None) -> Tensor:
    return _host(host, model).call("unigen_logprob", model=model, x=x)
