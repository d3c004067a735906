"""The default implementation of the five operations: call the model's method of the same name.

``trylast``, so a plugin's implementation runs first; a plugin that returns ``None`` for a model falls
through to these."""

from __future__ import annotations

from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def unigen_forward(model, x, t):
    return model.forward(x, t)


@hookimpl(trylast=True)
def unigen_reverse(model, z, steps):
    return model.reverse(z, steps)


@hookimpl(trylast=True)
def unigen_loss(model, batch, group):
    return model.loss(batch, group)


@hookimpl(trylast=True)
def unigen_sample(model, num_samples, steps):
    return model.sample(num_samples, steps)


@hookimpl(trylast=True)
def unigen_logprob(model, x):
    return model.logprob(x)
