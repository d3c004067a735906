"""The shape of the code base, checked on its source: plugins use only the two public tiers, no module
is too long to read, and the core's modules import each other without a cycle."""

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


def _core_graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports, anywhere in it (a function-local import is a dependency
    too: hiding a cycle inside a function does not remove it); ``TYPE_CHECKING`` blocks excluded."""
    names = {}
    for path in CORE.rglob("*.py"):
        parts = path.relative_to(CORE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for mod, path in names.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom):
                    base = sub.module or ""
                    if sub.level:
                        anchor = package.split(".")[: len(package.split(".")) - sub.level + 1]
                        base = ".".join([*anchor, *([base] if base else [])])
                    for a in sub.names:
                        target = f"{base}.{a.name}"
                        deps.add(target if target in names else base)
                elif isinstance(sub, ast.Import):
                    deps.update(a.name for a in sub.names)
        graph[mod] = {d for d in deps if d in names and d != mod}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_core_import_graph_is_acyclic():
    """A package importing its own submodules (``unigen`` -> ``unigen.api``) is not a cycle; a submodule
    importing back up into a module that imports it is."""
    graph = _core_graph()
    assert len(graph) > 30
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_a_model_uses_the_host_it_was_built_with():
    """The operations of a built model and ``get_sampler(name, host=self.host)`` go to the host the model
    was built with, not to the default host."""
    import copy

    import torch

    from unigen.plugin import GenerativeModel, ModelSpec, SamplerSpec, get_sampler, hookimpl

    class Point(GenerativeModel):
        data_kinds = ("vector",)

        def sample(self, num_samples, steps=None):
            return get_sampler("only-here", host=self.host).solve(None, torch.zeros(num_samples, 2), 1)

    calls = []

    class Extra:
        @hookimpl
        def unigen_register_models(self, register):
            register(ModelSpec(id="point", model_cls=Point))

        @hookimpl
        def unigen_register_samplers(self, register):
            register(SamplerSpec(id="only-here", solve=lambda fn, x, steps, **kw: x + 1, kind="ode"))

        @hookimpl(wrapper=True)
        def unigen_sample(self, model, num_samples, steps):
            calls.append(num_samples)
            return (yield)

    host = unigen.get_plugin_manager(autoload=False, plugins=[Extra()])
    model = unigen.build_model("point", unigen.DataInfo(name="v", shape=(2,), kind="vector"), host=host)
    assert model.host is host and copy.deepcopy(model).host is host  # copies (EMA) share it
    assert torch.equal(unigen.ops.sample(model, 3), torch.ones(3, 2)) and calls == [3]
    with pytest.raises(unigen.UnknownId):
        get_sampler("only-here")  # the default host does not have it


def test_the_plugin_guide_names_only_the_author_tier():
    """docs/writing-a-plugin.md: every ``unigen.X`` it names and every ``from unigen... import`` in its
    code is part of ``unigen.plugin`` (the test kit is ``unigen.plugin.testing``)."""
    import re

    from unigen.plugin import testing

    text = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    bad = []
    for dotted in re.findall(r"\bunigen(?:\.[A-Za-z_]\w*)+", text):
        parts = dotted.split(".")[1:]
        ok = parts[0] == "plugin" and (len(parts) == 1 or parts[1] in TIERS["unigen.plugin"])
        if ok and len(parts) > 2 and parts[1] == "testing":
            ok = parts[2] in testing.__all__ or parts[2] == "strategies"
        if not ok:
            bad.append(dotted)
    for module, names in re.findall(r"from (unigen[\w.]*) import ([\w, ]+)", text):
        bad += [f"{module}.{n.strip()}" for n in names.split(",") if module != "unigen.plugin" or n.strip() not in TIERS["unigen.plugin"]]
    assert not bad, bad


def _all_cycles():  # a helper for reading the graph by hand: python tests/core/test_structure.py
    graph = _core_graph()
    while (cycle := _cycle(graph)) is not None:
        print(" -> ".join(cycle))
        graph[cycle[-2]].discard(cycle[-1])


if __name__ == "__main__":
    _all_cycles()


DISTRIBUTIONS = sorted([ROOT / "unigen-core", *ROOT.glob("unigen-plugins/unigen-*"), ROOT / "tests" / "example-plugin"])


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda p: p.name)
def test_every_distribution_ships_py_typed(dist):
    (package,) = [p for p in (dist / "src").iterdir() if p.is_dir() and not p.name.endswith(".egg-info")
                  and not p.name.startswith((".", "_"))]
    assert (package / "py.typed").exists()
    assert f'{package.name} = [' in (dist / "pyproject.toml").read_text() and '"py.typed"' in (dist / "pyproject.toml").read_text()
