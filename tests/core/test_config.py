"""Configs: frozen attrs, validated when built, JSON/TOML round trips, --set parsing."""

from __future__ import annotations

import attrs
import pytest
from attrs import validators as v
from hypothesis import given
from hypothesis import strategies as st

from unigen import config as cfg
from unigen.errors import ConfigError
from unigen.trainer import TrainerConfig


@attrs.frozen(kw_only=True)
class Example:
    width: int = attrs.field(default=8, validator=[v.instance_of(int), v.gt(0)])
    rate: float = attrs.field(default=0.5, validator=[v.instance_of(float), v.ge(0)])
    name: str = "x"
    flag: bool = False
    levels: tuple[int, ...] = attrs.field(default=(8, 5), converter=tuple)
    maybe: int | None = None


@given(width=st.integers(1, 10_000), rate=st.floats(0, 1e6, allow_nan=False), name=st.text(max_size=20),
       flag=st.booleans(), levels=st.lists(st.integers(2, 9), min_size=1, max_size=4))
def test_json_and_toml_round_trip(width, rate, name, flag, levels):
    c = Example(width=width, rate=rate, name=name, flag=flag, levels=tuple(levels))
    assert cfg.from_dict(Example, cfg.to_dict(c)) == c
    assert cfg.from_toml(Example, cfg.to_toml(cfg.to_dict(c))) == c


def test_bad_values_fail_when_built_naming_the_field():
    with pytest.raises(ConfigError, match="'width' must be > 0"):
        cfg.from_dict(Example, {"width": -3})
    with pytest.raises(ConfigError, match="unknown config key 'wdith'"):
        cfg.from_dict(Example, {"wdith": 3})


def test_set_overrides_parse_by_type_and_go_to_the_config_that_has_the_key():
    out = cfg.apply_overrides({"model": Example(), "trainer": TrainerConfig()},
                              ["width=16", "rate=2", "flag=true", "levels=4,4,4", "maybe=none", "steps=7"])
    assert out["model"] == Example(width=16, rate=2.0, flag=True, levels=(4, 4, 4))
    assert out["trainer"].steps == 7


@pytest.mark.parametrize("item, message", [
    ("width=abc", "bad value for 'width'"),
    ("nokey=1", "unknown --set key 'nokey'"),
    ("novalue", "expects key=value"),
    ("flag=maybe", "bad value for 'flag'"),
    ("width=0", "'width' must be > 0"),
])
def test_bad_overrides_are_one_line_config_errors(item, message):
    with pytest.raises(ConfigError, match=message) as info:
        cfg.apply_overrides({"model": Example()}, [item])
    assert "\n" not in str(info.value)


def test_trainer_config_validates():
    with pytest.raises(ValueError):
        TrainerConfig(steps=-1)
    with pytest.raises(ValueError):
        TrainerConfig(optimizer="adamm")
