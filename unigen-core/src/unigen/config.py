"""Configs are frozen attrs classes; this module turns them into and out of JSON, TOML and
``--set key=value`` strings. A bad value fails when the config is built, naming the field."""

from __future__ import annotations

import json
import sys
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")


def fields_of(cls: type) -> dict[str, attrs.Attribute]:
    """The settings of a config class: its fields that ``__init__`` takes."""
    attrs.resolve_types(cls)
    return {f.name: f for f in attrs.fields(cls) if f.init}


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of the settings (tuples become lists)."""
    import attr

    return attr.asdict(config, retain_collection_types=False, filter=lambda a, _: a.init)


def from_dict(cls: type[C], values: Mapping[str, Any], *, what: str = "config") -> C:
    """Build ``cls`` from a mapping; unknown keys and invalid values raise :class:`ConfigError`."""
    known = fields_of(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown {what} key {unknown[0]!r} for {cls.__qualname__}; known: {', '.join(known)}"
        )
    kwargs = {k: _coerce(known[k], v) for k, v in values.items()}
    return build(cls, **kwargs)


def build(cls: type[C], **kwargs: Any) -> C:
    """``cls(**kwargs)`` with validator errors turned into one-line :class:`ConfigError`."""
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__qualname__}: {exc}") from None


def _origin_is_tuple(tp: Any) -> bool:
    """A tuple type, or an optional one (``tuple[int, ...] | None``)."""
    args = typing.get_args(tp)
    if type(None) in args:
        return any(_origin_is_tuple(a) for a in args if a is not type(None))
    return typing.get_origin(tp) is tuple or tp is tuple


def _coerce(field: attrs.Attribute, value: Any) -> Any:
    if isinstance(value, list) and _origin_is_tuple(field.type):
        return tuple(value)
    if field.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def parse_value(field: attrs.Attribute, text: str) -> Any:
    """Parse the string of ``--set key=value`` by the field's type."""
    tp = field.type
    args = typing.get_args(tp)
    if type(None) in args:  # Optional[X]
        if text.lower() in ("none", "null", ""):
            return None
        tp = next(a for a in args if a is not type(None))
    try:
        if tp is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if _origin_is_tuple(tp):
            inner = (typing.get_args(tp) or (str,))[0]
            items = json.loads(text) if text.startswith("[") else [s for s in text.split(",") if s]
            conv = inner if inner in (int, float) else str
            return tuple(conv(i) for i in items)
        return text
    except ValueError as exc:
        raise ConfigError(f"bad value for {field.name!r}: {text!r} ({exc})") from None


def split_assignment(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {item!r}")
    return key.strip(), value.strip()


def apply_overrides(configs: Mapping[str, Any], items: Iterable[str | tuple[str, Any]]) -> dict[str, Any]:
    """Apply settings to the config that has the key.

    :param configs: name -> config instance, e.g. ``{"model": ..., "trainer": ...}``.
    :param items: ``"key=value"`` strings (the value parsed by the field's type) or ``(key, value)``
        pairs with typed values (from TOML or keyword arguments). ``name.key`` (``trainer.ema_decay``)
        names the config; an unqualified key that several configs have is an error naming them.
    :return: the same names mapped to the updated configs.
    """
    changes: dict[str, dict[str, Any]] = {name: {} for name in configs}
    tables = {name: fields_of(type(cfg)) for name, cfg in configs.items()}
    for item in items:
        key, value = split_assignment(item) if isinstance(item, str) else item
        name, key = route(tables, key)
        field = tables[name][key]
        changes[name][key] = parse_value(field, value) if isinstance(item, str) else _coerce(field, value)
    return {
        name: build(type(cfg), **{**to_dict_shallow(cfg), **changes[name]}) if changes[name] else cfg
        for name, cfg in configs.items()
    }


def route(tables: Mapping[str, Mapping[str, Any]], key: str) -> tuple[str, str]:
    """The table a setting belongs to: ``(table, key)`` for ``table.key`` or for a key only one
    table has. A key two tables have must be qualified (``model.x`` or ``trainer.x``)."""
    table, dot, rest = key.partition(".")
    if dot and table in tables:
        if rest not in tables[table]:
            raise ConfigError(f"unknown {table} setting {rest!r}; known: {', '.join(sorted(tables[table]))}")
        return table, rest
    owners = [name for name, fields in tables.items() if key in fields]
    if len(owners) > 1:
        both = " and ".join(f"{name}.{key}" for name in owners)
        raise ConfigError(f"{key!r} is a setting of both {' and '.join(owners)}: write {both} instead")
    if not owners:
        known = ", ".join(sorted(k for fields in tables.values() for k in fields))
        raise ConfigError(f"unknown --set key {key!r}; known: {known}")
    return owners[0], key


def table_items(values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A TOML document's settings as ``(key, value)`` pairs: ``[model]`` and ``[trainer]`` tables
    become qualified keys (``model.ema_decay``), so a table's key never reaches another config."""
    out: list[tuple[str, Any]] = []
    for k, v in values.items():
        if isinstance(v, Mapping):
            out += [(f"{k}.{kk}", vv) for kk, vv in v.items()]
        else:
            out.append((k, v))
    return out


def to_dict_shallow(config: Any) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in attrs.fields(type(config)) if f.init}


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None
    except OSError as exc:  # a directory, no permission
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None


def to_toml(values: Mapping[str, Any]) -> str:
    """Write a flat (or one level of tables) mapping of scalars and lists as TOML."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)  # TOML has no surrogate-pair escapes
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(i) for i in v) + "]"
        raise ConfigError(f"cannot write {type(v).__name__} to TOML")

    lines = [f"{k} = {fmt(v)}" for k, v in values.items() if not isinstance(v, Mapping) and v is not None]
    for k, v in values.items():
        if isinstance(v, Mapping):
            lines += ["", f"[{k}]"] + [f"{kk} = {fmt(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(lines) + "\n"


def from_toml(cls: type[C], text: str) -> C:
    return from_dict(cls, tomllib.loads(text))
