"""Registries filled by the registration hooks: models, datasets, samplers and metrics.

An id is registered once. An id that two plugins register is refused from both (no silent winner:
the host names both and the variable that blocks one); asking for it repeats that line. An unknown id fails with the
known ids and, where the id belongs to a family that is not installed, the distribution to install.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs

from .errors import UnigenError, UnknownId

if TYPE_CHECKING:  # annotations only
    from .model import GenerativeModel


@functools.lru_cache(maxsize=1)
def _catalogue() -> dict[str, dict[str, list[str]]]:
    """``catalogue.json``: the distributions published from this repository and what they provide."""
    text = importlib.resources.files("unigen").joinpath("catalogue.json").read_text()
    return json.loads(text)["distributions"]


def provider_of(what: str, key: str) -> str | None:
    """The distribution that provides ``key`` (``what``: models, commands, metrics...), or None."""
    for dist, provides in _catalogue().items():
        if key in provides.get(what, ()):
            return dist
    return None


def _config_is_attrs(instance: Any, attribute: Any, model_cls: type) -> None:
    config = getattr(model_cls, "Config", None)
    if not (isinstance(config, type) and attrs.has(config)):
        raise TypeError(f"model {instance.id!r}: {getattr(model_cls, '__qualname__', model_cls)}.Config is not an "
                        f"attrs class (declare it with @attrs.frozen(kw_only=True))")


@attrs.frozen(kw_only=True)
class ModelSpec:
    """A model id and the class that builds it (``model_cls.Config`` is its config class)."""

    id: str
    model_cls: type[GenerativeModel] = attrs.field(validator=_config_is_attrs)
    description: str = ""
    plugin: str = ""  # filled in by the host: the plugin that registered it

    @property
    def family(self) -> str:
        return self.model_cls.family

    @property
    def paradigm(self) -> str:
        return self.model_cls.paradigm

    @property
    def logprob(self) -> str:
        """The class's default capability; a built model's own ``logprob_kind`` is the one that holds."""
        return self.model_cls.logprob_kind

    @property
    def logprob_kinds(self) -> tuple[str, ...]:
        """Every kind an instance may report, the default first (more than one: it depends on the config)."""
        return self.model_cls.logprob_kinds()


@attrs.frozen(kw_only=True)
class DatasetSpec:
    """A dataset id and a loader ``load(split, data_dir) -> unigen.data.Dataset``."""

    id: str
    load: Callable[..., Any]
    kind: str = "image"  # image | vector | text-image
    description: str = ""
    plugin: str = ""
    reads_files: bool = True  # False: built in or generated; --data-dir given to it is an error


@attrs.frozen(kw_only=True)
class SamplerSpec:
    """An integrator ``solve(fn, x, steps, **kw) -> x0`` from t=1 (noise) to t=0 (data).

    ``kind`` is ``ode`` (``fn(x, t) -> dx/dt``) or ``sde`` (``fn(x, t) -> (drift, diffusion)``).
    """

    id: str
    solve: Callable[..., Any]
    kind: str = "ode"
    order: int = 1
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class MetricSpec:
    """A metric ``compute(ctx) -> dict`` for ``unigen eval`` (ctx: :class:`unigen.metrics.EvalContext`)."""

    id: str
    compute: Callable[..., Any]
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class LoggerSpec:
    """A training logger for ``--logger ID``: ``create(run_dir) -> unigen.trainer.Callback``, usually
    a :class:`unigen.loggers.Logger`, which receives every logged scalar and every picture. ``create``
    checks what the logger needs (its package) and writes nothing; writing starts at
    ``on_train_start``."""

    id: str
    create: Callable[..., Any]
    description: str = ""
    plugin: str = ""


class _Spec(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def plugin(self) -> str: ...


S = TypeVar("S", bound=_Spec)


class Registry(Generic[S]):
    """Id -> spec, filled through a ``register`` callback that records which plugin registered it."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, S] = {}
        self.refused: dict[str, str] = {}  # id -> why (registered by two plugins)

    def callback(self, plugin: str) -> Callable[[S], None]:
        def register(spec: S) -> None:
            spec = attrs.evolve(spec, plugin=plugin)  # type: ignore[misc]  # every spec is an attrs class
            old = self._items.get(spec.id)
            if old is not None:
                raise UnigenError(
                    f"{self.what} id {spec.id!r} registered twice: by plugin {old.plugin!r} "
                    f"and by plugin {plugin!r}"
                )
            self._items[spec.id] = spec

        return register

    def __getitem__(self, key: str) -> S:
        try:
            return self._items[key]
        except KeyError:
            raise UnknownId(self.refused.get(key) or self.unknown_message(key)) from None

    def unknown_message(self, key: str) -> str:
        known = ", ".join(sorted(self._items)) or "none"
        msg = f"unknown {self.what} {key!r}; known: {known}"
        provider = provider_of(self.what + "s", key)
        if provider:
            msg += f" (no plugin provides {key!r}: pip install {provider})"
        else:
            close = difflib.get_close_matches(key, self._items, n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
        return msg

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list[S]:
        return [self._items[k] for k in sorted(self._items)]
