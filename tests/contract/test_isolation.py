"""A family alone: ``nox -s "family(NAME)"`` installs only unigen-core and unigen-NAME and sets
``UNIGEN_ISOLATED_FAMILY=NAME`` (these tests are skipped everywhere else). The distribution loads without
failures, registers only its own ids and everything the core's catalogue says it provides (model ids,
commands), and each of its commands answers ``--help``; the rest of tests/contract then runs its ids alone.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import os

import pytest

import unigen
from unigen.cli import main

FAMILY = os.environ.get("UNIGEN_ISOLATED_FAMILY", "")
pytestmark = pytest.mark.skipif(not FAMILY, reason="run by nox's family sessions (the core and one family alone)")


def _provides() -> dict[str, list[str]]:
    catalogue = json.loads(importlib.resources.files("unigen").joinpath("catalogue.json").read_text())
    return catalogue["distributions"].get(f"unigen-{FAMILY}", {})


def test_only_the_core_and_the_family_are_installed():
    names = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    assert {n for n in names if n and n.startswith("unigen-")} == {"unigen-core", f"unigen-{FAMILY}"}


def test_the_family_alone_registers_its_own_ids_and_what_the_catalogue_says():
    host = unigen.default_host()
    assert not host.failures, host.failures
    ids = list(host.models)
    foreign = [s.id for s in host.models.values() if s.plugin != FAMILY]
    missing = sorted(set(_provides().get("models", [])) - set(ids))
    assert not foreign and not missing, f"lists {ids}; foreign: {foreign}; in the catalogue, not registered: {missing}"
    assert ids or _provides().get("commands"), "registers no model and provides no command"


def test_its_commands_answer_help(capsys):
    for command in _provides().get("commands", []):  # a plugin of commands (unigen-bench) registers no models
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0, command
        assert "usage" in capsys.readouterr().out
