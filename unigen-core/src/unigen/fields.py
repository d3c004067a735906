"""Config-field helpers: one call per validated field of a frozen attrs config.

``hidden: int = positive_int(64)`` is ``attrs.field(default=64, validator=[instance_of(int), gt(0)])``.
A bad value raises ``ValueError``/``TypeError`` when the config is built, and the config layer
(:func:`unigen.config.build`) reports it as one line naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs
from attrs import validators as v

from .errors import UnigenError
from .plugins import get_sampler

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _field(default: Any, kind: type, checks: list[Any], optional: bool) -> Any:
    validator: Any = [v.instance_of(kind), *checks]
    return attrs.field(default=default, validator=v.optional(validator) if optional else validator)


def positive_int(default: Any, *, optional: bool = False) -> Any:
    """An int > 0 (``optional``: or None)."""
    return _field(default, int, [v.gt(0)], optional)


def nonnegative_int(default: Any) -> Any:
    """An int >= 0."""
    return _field(default, int, [v.ge(0)], False)


def int_at_least(default: Any, low: int) -> Any:
    """An int >= ``low``."""
    return _field(default, int, [v.ge(low)], False)


def positive_float(default: Any, *, optional: bool = False) -> Any:
    """A float > 0 (``optional``: or None)."""
    return _field(default, float, [v.gt(0)], optional)


def nonnegative_float(default: Any, *, optional: bool = False) -> Any:
    """A float >= 0 (``optional``: or None)."""
    return _field(default, float, [v.ge(0)], optional)


def probability(default: Any, *, optional: bool = False) -> Any:
    """A float in [0, 1] (``optional``: or None)."""
    return _field(default, float, [v.ge(0), v.le(1)], optional)


def fraction(default: Any) -> Any:
    """A float in [0, 1): a decay, a share that must leave something."""
    return _field(default, float, [v.ge(0), v.lt(1)], False)


def open_unit(default: Any) -> Any:
    """A float in (0, 1)."""
    return _field(default, float, [v.gt(0), v.lt(1)], False)


def one_of(default: Any, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    return attrs.field(default=default, validator=v.in_(tuple(choices)))


def flag(default: bool) -> Any:
    """A bool."""
    return attrs.field(default=default, validator=v.instance_of(bool))


def text_field(default: str = "") -> Any:
    """A str."""
    return attrs.field(default=default, validator=v.instance_of(str))


def positive_ints(default: tuple[int, ...] | None, *, optional: bool = False) -> Any:
    """A non-empty tuple of ints > 0 (channel multipliers, widths); ``optional``: or None."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if optional and value is None:
            return
        if not (isinstance(value, tuple) and value and all(isinstance(m, int) and m > 0 for m in value)):
            raise ValueError(f"'{attribute.name}' must be a non-empty tuple of positive ints, got {value!r}")

    return attrs.field(default=default, validator=check)


def registered_sampler(kind: str | None = None, also: tuple[str, ...] = ()) -> Validator:
    """An attrs validator for a config's ``sampler`` field: a sampler registered with the default host
    (of ``kind``, when given) or one of the model's own names in ``also`` (e.g. ``"auto"``). A mistake is a ValueError listing the known ones, which the config layer
    reports as one line."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        name = getattr(attribute, "name", "sampler")
        if not isinstance(value, str):
            raise ValueError(f"'{name}' must be a string, got {value!r}")
        if value in also:
            return
        try:
            get_sampler(value, kind=kind)
        except UnigenError as exc:
            raise ValueError(f"'{name}' = {value!r}: {exc}") from None

    return check


def sampler(default: str, kind: str | None = None, *, also: tuple[str, ...] = ()) -> Any:
    """A registered sampler id (of ``kind``, ``ode`` or ``sde``, when given); a mistake lists the known ones."""
    return attrs.field(default=default, validator=registered_sampler(kind, also))


__all__ = [
    "flag", "fraction", "int_at_least", "nonnegative_float", "nonnegative_int", "one_of", "open_unit",
    "positive_float", "positive_int", "positive_ints", "probability", "registered_sampler", "sampler",
    "text_field",
]
