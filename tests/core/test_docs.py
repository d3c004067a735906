"""The generated family pages of the documentation list every config field of every model."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import attrs
import pytest

import unigen

DOCS = Path(__file__).resolve().parents[2] / "docs"
_spec = importlib.util.spec_from_file_location("gen_families", DOCS / "gen_families.py")
gen_families = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_families)

HOST = unigen.default_host()
PAGES = gen_families.family_pages(HOST)


def _rows(page: str, model_id: str) -> list[list[str]]:
    """The table rows (cells) of the section of ``model_id``."""
    section = page.split(f"## `{model_id}`\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in section.splitlines() if line.startswith("| `")]


@pytest.mark.parametrize("model_id", sorted(HOST.models))
def test_each_family_page_lists_every_config_field_with_its_type_and_default(model_id):
    spec = HOST.models[model_id]
    page = PAGES[spec.model_cls.family]
    rows = _rows(page, model_id)
    fields = attrs.fields(spec.model_cls.Config) if attrs.has(spec.model_cls.Config) else ()
    assert [r[0].strip("`") for r in rows] == [f.name for f in fields]
    for row, field in zip(rows, fields):
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
        assert row[2].strip("`").replace("\\|", "|") == repr(default), field.name
        assert row[1].strip("`") and row[1] != "``", field.name
    if not fields:
        assert "This model has no settings." in page.split(f"## `{model_id}`\n", 1)[1].split("\n## ", 1)[0]
    doc = (spec.model_cls.__doc__ or "").strip().splitlines()
    assert not doc or doc[0].strip() in page


def test_valid_ranges_come_from_the_validators():
    rule = gen_families.field_rule
    config = attrs.make_class("C", {"n": attrs.field(default=3, validator=[attrs.validators.instance_of(int),
                                                                            attrs.validators.gt(0)]),
                                    "p": attrs.field(default=0.5, validator=[attrs.validators.ge(0),
                                                                             attrs.validators.le(1)]),
                                    "k": attrs.field(default="a", validator=attrs.validators.in_(("a", "b")))})
    n, p, k = attrs.fields(config)
    assert gen_families.valid_range(rule(n)) == "(0, inf)"
    assert gen_families.valid_range(rule(p)) == "[0, 1]"
    assert gen_families.valid_range(rule(k)) == "one of 'a', 'b'"


def test_field_comments_are_the_meaning_column():
    @attrs.frozen
    class Config:
        # the width of every layer
        width: int = 8
        depth: int = 2  # how many layers

    assert gen_families.field_comments(Config) == {"width": "the width of every layer", "depth": "how many layers"}


def test_an_inherited_field_keeps_its_base_comment_unless_the_subclass_comments_it():
    @attrs.frozen
    class Base:
        width: int = 8  # the width of every layer
        depth: int = 2  # how many layers

    @attrs.frozen
    class Child(Base):
        depth: int = 3  # more layers for this variant
        width: int = 16

    assert gen_families.field_comments(Child) == {"width": "the width of every layer",
                                                  "depth": "more layers for this variant"}


@pytest.mark.parametrize("model_id", sorted(HOST.models))
def test_every_config_field_has_a_meaning(model_id):
    """The meaning column comes from the comment beside (or just above) the field in its config class."""
    spec = HOST.models[model_id]
    rows = _rows(PAGES[spec.model_cls.family], model_id)
    missing = [r[0].strip("`") for r in rows if not r[4]]
    assert not missing, (f"{model_id}: {spec.model_cls.Config.__qualname__} fields without a comment, so the docs "
                         f"say nothing of what they mean: {missing}")
