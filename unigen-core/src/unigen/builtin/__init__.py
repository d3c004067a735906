"""The core's own plugin, registered through exactly the same hooks as any external plugin: the default
dispatch of the five operations (:mod:`.operations`) and the built-in datasets, samplers and metrics."""

from __future__ import annotations

from ..data import digits, idx, shapes, text, toy
from ..hookspecs import hookimpl
from ..metrics import BUILTIN as BUILTIN_METRICS
from ..registry import DatasetSpec
from ..samplers import BUILTIN as BUILTIN_SAMPLERS
from .operations import unigen_forward, unigen_logprob, unigen_loss, unigen_reverse, unigen_sample


@hookimpl
def unigen_register_datasets(register):
    register(DatasetSpec(id="digits", load=digits.load, reads_files=False, description="scikit-learn 8x8 digits, 17 levels (embedded)"))
    for name in ("fashion-mnist", "mnist"):
        register(DatasetSpec(id=name, load=idx.loader(name), description=f"{name} IDX files, 28x28, 256 levels"))
    # Text-image pairs: each image with the caption of its class, tokenized (unigen.data.text).
    register(DatasetSpec(id="digits-captions", load=text.captioned(digits.load, "digits-captions"), kind="text-image", reads_files=False,
                         description="digits paired with captions such as 'a handwritten digit three'"))
    register(DatasetSpec(id="shapes-captions", load=text.captioned(shapes.loader(32), "shapes-captions"),
                         kind="text-image", description="shapes paired with captions such as 'a coloured circle'"))
    for name in ("fashion-mnist", "mnist"):
        register(DatasetSpec(id=f"{name}-captions", load=text.captioned(idx.loader(name), f"{name}-captions"),
                             kind="text-image", description=f"{name} paired with captions of its labels"))
    for size in shapes.SIZES:  # procedural coloured shapes with known factors (unigen.data.shapes)
        register(DatasetSpec(id="shapes" if size == 32 else f"shapes-{size}", load=shapes.loader(size), reads_files=False,
                             description=f"coloured shapes {size}x{size}, 4 shape classes, 256 levels (procedural)"))
    for name in toy.TOYS:
        register(DatasetSpec(id=name, load=toy.loader(name), kind="vector", reads_files=False, description=f"2-D toy: {name}"))


@hookimpl
def unigen_register_samplers(register):
    for spec in BUILTIN_SAMPLERS:
        register(spec)


@hookimpl
def unigen_register_loggers(register):
    from ..loggers import BUILTIN as BUILTIN_LOGGERS

    for spec in BUILTIN_LOGGERS:
        register(spec)


@hookimpl
def unigen_register_metrics(register):
    for spec in BUILTIN_METRICS:
        register(spec)


__all__ = [
    "unigen_forward", "unigen_logprob", "unigen_loss", "unigen_register_datasets", "unigen_register_metrics",
    "unigen_register_samplers", "unigen_reverse", "unigen_sample",
]
