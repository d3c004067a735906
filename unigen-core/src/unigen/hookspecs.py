"""Every hook unigen defines. Plugins implement them with ``@unigen.hookimpl``.

Registration hooks are called once, when the plugin manager is built, and receive a ``register``
callback. The five operation hooks are ``firstresult``: the first implementation that returns a
value other than ``None`` wins; the core's own implementation (``unigen.defaults``, ``trylast``) calls
the model's method of the same name. A plugin can therefore replace one operation for its own model
types (return ``None`` for the others) or wrap every operation of every model with
``@hookimpl(wrapper=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("unigen")
hookimpl = pluggy.HookimplMarker("unigen")


@hookspec
def unigen_register_models(register: Callable[..., None]) -> None:
    """Register model ids. Called once per plugin manager.

    :param register: ``register(spec)`` with a :class:`unigen.registry.ModelSpec`. A duplicate id is
        refused with an error naming both plugins.
    """


@hookspec
def unigen_register_datasets(register: Callable[..., None]) -> None:
    """Register datasets. Called once per plugin manager.

    :param register: ``register(spec)`` with a :class:`unigen.registry.DatasetSpec`.
    """


@hookspec
def unigen_register_samplers(register: Callable[..., None]) -> None:
    """Register ODE/SDE samplers (integrators from t=1 to t=0). Called once per plugin manager.

    :param register: ``register(spec)`` with a :class:`unigen.registry.SamplerSpec`.
    """


@hookspec
def unigen_register_metrics(register: Callable[..., None]) -> None:
    """Register evaluation metrics for ``unigen eval``. Called once per plugin manager.

    :param register: ``register(spec)`` with a :class:`unigen.registry.MetricSpec`.
    """


@hookspec(firstresult=True)
def unigen_forward(model: Any, x: Any, t: Any) -> Any:
    """Data to noise/latent (the forward process). Called by every core caller of ``forward``.

    :param model: a :class:`unigen.GenerativeModel`.
    :param x: a data batch, ``Tensor, shape (B, *D)``.
    :param t: time in [0, 1] (t=0 data, t=1 noise), a tensor of shape (B,), or ``None``.
    :return: the model's forward result; ``firstresult``.
    """


@hookspec(firstresult=True)
def unigen_reverse(model: Any, z: Any, steps: Any) -> Any:
    """Noise/latent to data. ``steps`` is the number of solver steps or ``None`` for the default.
    ``firstresult``."""


@hookspec(firstresult=True)
def unigen_loss(model: Any, batch: Any, group: Any) -> Any:
    """The training objective. Called by the trainer once per optimizer group it is about to step.

    :param batch: a :class:`unigen.data.Batch`.
    :param group: the name of the parameter group about to be stepped, or ``None`` when the caller
        wants every term at once (evaluation, loss comparison).
    :return: a scalar tensor, or a mapping of group name to scalar tensor; ``firstresult``.
    """


@hookspec(firstresult=True)
def unigen_sample(model: Any, num_samples: Any, steps: Any) -> Any:
    """Draw ``num_samples`` new examples with ``steps`` solver steps (``None``: the model's default).
    ``firstresult``."""


@hookspec(firstresult=True)
def unigen_logprob(model: Any, x: Any) -> Any:
    """log p(x) per example in nats, ``Tensor, shape (B,)``; exact, bound or estimate as the model
    declares. ``firstresult``."""
