"""Every hook unigen defines. Plugins implement them with ``@unigen.hookimpl``.

Registration hooks are called once, when the plugin manager is built, and receive a ``register``
callback. The five operation hooks are ``firstresult``: the first implementation that returns a
value other than ``None`` wins; the core's own implementation (``unigen.builtin``, ``trylast``) calls
the model's method of the same name. A plugin can therefore replace one operation for its own model
types (return ``None`` for the others) or wrap every operation of every model with
``@hookimpl(wrapper=True)``.

What the operations take and return, per paradigm (``model.paradigm``). Shapes: ``B`` examples, ``D``
the data's shape (``model.data.shape``: (C, H, W) for images, (d,) for vectors). Data are float tensors
in [-1, 1] for images and as they come for vectors; t=0 is data and t=1 is noise.

============  ======================================  ======================================
paradigm      ``forward(x, t)`` returns               ``reverse(z, steps)`` takes
============  ======================================  ======================================
likelihood    a latent code (VAE: z ~ q(z|x),         its latent (VAE: (B, z_dim)) or noise;
              (B, z_dim)); an autoregressive model:   returns data (B, *D)
              the logits of its conditionals
flow          z of the data's shape (B, *D), the      z (B, *D); returns data (B, *D); for a
              noise at time t (t=None: t=1). Never    ``bijective`` model ``reverse(forward(x))``
              a log-determinant: that is inside       equals x
              ``logprob``
score         a draw of the noising process at t      x at t=1 (B, *D); returns data (B, *D)
              (t=None: t=1), (B, *D)
implicit      unsupported (nothing maps data back     z (B, z_dim); returns data (B, *D)
              to the latent)
world         an embedding (JEPA: (B, N, dim))        unsupported, or data (B, *D)
============  ======================================  ======================================

``sample(num_samples, steps)`` returns (num_samples, *D) data, drawn from the global torch RNG only (the
same ``torch.manual_seed`` gives the same samples). ``logprob(x)`` returns (B,) nats, of the kind the
instance's ``logprob_kind`` says. **Dequantization** is the caller's: the NLL metric adds uniform noise to
discrete data before calling ``logprob`` of a density (``logprob_discrete`` False) and passes the levels
unchanged to a pmf (``logprob_discrete`` True); a model's ``loss`` dequantizes its own training batches
when it needs to. A **group** is a named set of parameters with its own optimizer
(``GenerativeModel.parameter_groups``: "main" for most models, "generator"/"critic" for a GAN); the
trainer asks ``loss`` for the group it is about to step.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # annotations only: the model module imports the core, which imports this one
    from torch import Tensor

    from .data import Batch
    from .model import GenerativeModel

hookspec = pluggy.HookspecMarker("unigen")
hookimpl = pluggy.HookimplMarker("unigen")


@hookspec
def unigen_register_models(register: Callable[..., None]) -> None:
    """Register model ids. Called once per plugin manager.

    :param register: ``register(spec)`` with a :class:`unigen.registry.ModelSpec`. An id that two
        plugins register is refused from both, with one warning naming both distributions and the
        ``UNIGEN_BLOCK_PLUGINS`` setting that keeps the other; ``model_cls.Config`` must be an attrs class.
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


@hookspec
def unigen_register_loggers(register: Callable[..., None]) -> None:
    """Register training loggers for ``unigen train --logger ID``. Called once per plugin manager.

    :param register: ``register(spec)`` with a :class:`unigen.registry.LoggerSpec`.
    """


@hookspec
def unigen_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to ``unigen`` (as llm's ``register_commands``). Called once per parser.

    :param subparsers: the ``argparse`` sub-parsers of the ``unigen`` command. Add a command with
        ``p = subparsers.add_parser(name, help=...)``, its arguments with ``p.add_argument(...)``, and
        what runs it with ``p.set_defaults(run=fn)``, where ``fn(args) -> int`` returns the exit code.
        A user's mistake is raised as :class:`unigen.errors.UnigenError` (one line on stderr, exit 2).
    """


@hookspec(firstresult=True)
def unigen_forward(model: GenerativeModel, x: Tensor, t: Tensor | None) -> Any:
    """Data to noise/latent (the forward process). Called by every core caller of ``forward``
    (:func:`unigen.ops.forward`), e.g. the latent pictures of ``unigen bench``.

    :param model: the model.
    :param x: a data batch, ``Tensor, shape (B, *D)``.
    :param t: time in [0, 1] (t=0 data, t=1 noise), shape (B,), or ``None`` (the end of the process).
    :return: what the model's paradigm returns (module docstring): a flow's ``z`` of shape (B, *D) with no
        log-determinant, a VAE's latent (B, z_dim), a diffusion model's noised x_t (B, *D); ``firstresult``.
    """


@hookspec(firstresult=True)
def unigen_reverse(model: GenerativeModel, z: Tensor, steps: int | None) -> Tensor:
    """Noise/latent to data, the inverse direction of ``unigen_forward``.

    :param model: the model.
    :param z: noise or latent: (B, *D) for flows and diffusion, (B, z_dim) for VAEs and GANs.
    :param steps: solver or sampler steps, ``None`` for the model's ``default_steps``.
    :return: data, ``Tensor, shape (B, *D)``; ``firstresult``.
    """


@hookspec(firstresult=True)
def unigen_loss(model: GenerativeModel, batch: Batch, group: str | None) -> Tensor | Mapping[str, Tensor]:
    """The training objective. Called by the trainer once per optimizer group it is about to step.

    :param model: the model, in training mode.
    :param batch: a :class:`unigen.data.Batch` (``batch.x`` of shape (B, *D), not dequantized).
    :param group: the name of the parameter group about to be stepped, or ``None`` when the caller
        wants every term at once (evaluation, loss comparison).
    :return: a scalar tensor, or a mapping of group name to scalar tensor; ``firstresult``.
    """


@hookspec(firstresult=True)
def unigen_sample(model: GenerativeModel, num_samples: int, steps: int | None) -> Tensor:
    """Draw new examples. Called by ``unigen sample``, the sample-based metrics and the bench.

    :param model: the model, in eval mode.
    :param num_samples: how many.
    :param steps: solver steps, ``None`` for the model's default.
    :return: ``Tensor, shape (num_samples, *D)`` in the data's dtype and range, drawn from the global torch
        RNG (the same seed gives the same samples); ``firstresult``.
    """


@hookspec(firstresult=True)
def unigen_logprob(model: GenerativeModel, x: Tensor) -> Tensor:
    """log p(x) per example in nats. Called by the NLL metric, which dequantizes discrete data first
    unless ``model.logprob_discrete``.

    :param model: the model, in eval mode.
    :param x: ``Tensor, shape (B, *D)``.
    :return: ``Tensor, shape (B,)``: exact, a bound or an estimate as ``model.logprob_kind`` (the
        instance's value) says; ``firstresult``.
    """
