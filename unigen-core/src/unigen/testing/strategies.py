"""Hypothesis strategies for model configs, derived from the attrs fields and their validators.

Each field's strategy is read from what its validators say: ``in_(options)`` draws an option,
``instance_of(bool)`` a boolean, ``instance_of(int)``/``instance_of(float)`` with ``gt``/``ge``/``lt``/``le``
a number in the allowed range, ``optional(...)`` also ``None``; a field whose validators say nothing
the strategy understands (a custom check) keeps its default. Integers are drawn between the lower bound
and the default, so a fuzzed model is never larger than the default one and builds quickly. Validators
that relate several fields are honoured by building the config and rejecting what it refuses.

:func:`invalid_values` gives, per field, values its validators must refuse, for the contract's check
that a bad value is rejected with the field's name.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator
from typing import Any

import attrs
from attrs import validators as v
from hypothesis import assume
from hypothesis import strategies as st

_LOWER = {">": operator.gt, ">=": operator.ge}
_UPPER = {"<": operator.lt, "<=": operator.le}


@attrs.frozen
class FieldRule:
    """What a field's validators allow: its type, options, bounds and whether None is accepted."""

    type: type | tuple[type, ...] | None = None
    options: tuple[Any, ...] | None = None
    lower: tuple[float, bool] | None = None  # (bound, inclusive)
    upper: tuple[float, bool] | None = None
    optional: bool = False


def _flatten(validator: Any) -> Iterator[Any]:
    if validator is None:
        return
    inner = getattr(validator, "_validators", None)
    if inner is not None:  # and_(...) and validator lists
        for one in inner:
            yield from _flatten(one)
    else:
        yield validator


def field_rule(field: attrs.Attribute) -> FieldRule:
    """Read a field's validators into a :class:`FieldRule`."""
    return _rule(field.validator)


def _rule(validator: Any) -> FieldRule:
    rule = FieldRule()
    for one in _flatten(validator):
        if isinstance(one, type(v.optional(v.instance_of(int)))):
            rule = attrs.evolve(_rule(one.validator), optional=True)
        elif isinstance(one, type(v.instance_of(int))):
            rule = attrs.evolve(rule, type=one.type)
        elif isinstance(one, type(v.in_(()))):
            rule = attrs.evolve(rule, options=tuple(one.options))
        elif isinstance(one, type(v.gt(0))):
            if one.compare_op in _LOWER:
                rule = attrs.evolve(rule, lower=(one.bound, one.compare_op == ">="))
            elif one.compare_op in _UPPER:
                rule = attrs.evolve(rule, upper=(one.bound, one.compare_op == "<="))
    return rule


def _number(rule: FieldRule, default: Any, integer: bool) -> st.SearchStrategy[Any]:
    lo = rule.lower[0] if rule.lower else None
    hi = rule.upper[0] if rule.upper else None
    if integer:
        low = (math.floor(lo) + (0 if rule.lower[1] else 1)) if lo is not None else min(default, 0)
        high = (math.ceil(hi) - (0 if rule.upper[1] else 1)) if hi is not None else max(default, low)
        return st.integers(low, max(low, min(high, max(default, low))))
    low = lo if lo is not None else (default - abs(default) - 1.0)
    high = hi if hi is not None else max(2.0 * abs(default), low + 1.0)
    return st.floats(low, high, exclude_min=bool(rule.lower and not rule.lower[1]),
                     exclude_max=bool(rule.upper and not rule.upper[1]), allow_nan=False)


def field_strategy(field: attrs.Attribute, default: Any = attrs.NOTHING) -> st.SearchStrategy[Any]:
    """Values the field's validators accept (``default`` when they say too little to draw others).
    ``default``: the field's own default unless given (e.g. a small example config's value)."""
    if default is attrs.NOTHING:
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
    rule = field_rule(field)
    if rule.options is not None:
        base = st.sampled_from(sorted(rule.options, key=repr))
    elif rule.type is bool:
        base = st.booleans()
    elif rule.type is int and isinstance(default, int) and not isinstance(default, bool):
        base = _number(rule, default, integer=True)
    elif rule.type is float and isinstance(default, float):
        base = _number(rule, default, integer=False)
    else:
        base = st.just(default)
    return st.one_of(st.none(), base) if rule.optional else base


def config_values(cls: type, base: Any = None) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of field values, one strategy per field of the attrs class ``cls``; ``base`` (an instance)
    gives the defaults (and so the largest integers) instead of the class's own."""
    return st.fixed_dictionaries({
        f.name: field_strategy(f, attrs.NOTHING if base is None else getattr(base, f.name))
        for f in attrs.fields(cls) if f.init
    })


@st.composite
def configs(draw: st.DrawFn, cls: type, base: Any = None) -> Any:
    """Valid instances of ``cls``: drawn values that the class's cross-field validators also accept."""
    values = draw(config_values(cls, base))
    try:
        return cls(**values)
    except (TypeError, ValueError):
        assume(False)


def invalid_values(cls: type) -> list[tuple[str, Any]]:
    """(field name, value) pairs that the field's own validators must refuse, one or two per field."""
    out: list[tuple[str, Any]] = []
    for f in attrs.fields(cls):
        if not f.init:
            continue
        rule = field_rule(f)
        if rule.options is not None:
            out.append((f.name, "no-such-choice"))
            continue
        if rule.type in (int, float):
            out.append((f.name, "not-a-number"))
        if rule.type is bool:
            out.append((f.name, "yes"))
        if rule.type in (int, float) and rule.lower is not None:
            bound, inclusive = rule.lower
            out.append((f.name, (bound - 1 if inclusive else bound) if rule.type is int else
                        (bound - 1.0 if inclusive else float(bound))))
        if rule.type in (int, float) and rule.upper is not None:
            bound, inclusive = rule.upper
            out.append((f.name, (bound + 1 if inclusive else bound) if rule.type is int else
                        (bound + 1.0 if inclusive else float(bound))))
    return out
