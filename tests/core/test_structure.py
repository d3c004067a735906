"""The shape of the code base, checked on its source: plugins use only the two public tiers and no
module is too long to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import unigen
import unigen.plugin

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "unigen-core" / "src" / "unigen"
PLUGIN_SOURCES = sorted([*ROOT.glob("unigen-plugins/*/src/**/*.py"), *ROOT.glob("tests/example-plugin/src/**/*.py")])
DISTRIBUTION_SOURCES = sorted([*CORE.rglob("*.py"), *PLUGIN_SOURCES])
TIERS = {"unigen": set(unigen.__all__), "unigen.plugin": set(unigen.plugin.__all__)}


def _unigen_imports(tree: ast.AST):
    """(line, module, name) for every import of unigen in a module, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "unigen":
                    yield node.lineno, a.name, None
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "unigen":
            for a in node.names:
                yield node.lineno, node.module, a.name


def test_the_sources_were_found():
    assert len(PLUGIN_SOURCES) > 40 and any(p.name == "model.py" and "example-plugin" in str(p) for p in PLUGIN_SOURCES)


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_two_tiers(path):
    """``import unigen`` or ``from unigen[.plugin] import NAME`` with NAME public in that tier, nothing else."""
    bad = []
    for line, module, name in _unigen_imports(ast.parse(path.read_text())):
        if name is None:
            ok = module in TIERS
        else:
            ok = module in TIERS and name in TIERS[module]
        if not ok:
            bad.append(f"line {line}: {module}" + (f" import {name}" if name else ""))
    assert not bad, f"{path.name} reaches past unigen / unigen.plugin: {bad}"


def test_the_tiers_are_disjoint_apart_from_shared_names_and_all_exist():
    for tier, names in TIERS.items():
        module = unigen if tier == "unigen" else unigen.plugin
        assert all(hasattr(module, n) for n in names), tier
    assert {"hookimpl", "GenerativeModel", "ModelSpec", "positive_int", "sampler"} <= TIERS["unigen.plugin"]
    assert not {"hookimpl", "GenerativeModel", "ModelSpec"} & TIERS["unigen"]


@pytest.mark.parametrize("path", DISTRIBUTION_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_500_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= 500, f"{path.relative_to(ROOT)} has {n} lines"
