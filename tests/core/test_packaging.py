"""What the installed distributions say about themselves: the owner of the import name, --version."""

from __future__ import annotations

import importlib_metadata
import pytest

import unigen
from unigen.cli import main


def test_the_import_package_belongs_to_unigen_core():
    assert "unigen-core" in [o.lower().replace("_", "-") for o in importlib_metadata.packages_distributions()["unigen"]]
    assert importlib_metadata.version("unigen-core") == unigen.__version__


def test_a_clash_with_pypis_unrelated_unigen_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    # PyPI's audio-tagging `unigen` installs the same import package; both installed = one overwrites the other
    monkeypatch.setattr(importlib_metadata, "packages_distributions",
                        lambda: {"unigen": ["unigen-core", "unigen"], "numpy": ["numpy"]})
    assert main(["train", "gmm-nosuch", "--data", "moons", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "also installed by unigen " in err[0] and "pip uninstall unigen unigen-core" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("owners", [["unigen-core"], ["unigen_core"], []])
def test_no_clash_when_only_unigen_core_or_nobody_is_named(monkeypatch, capsys, owners):
    monkeypatch.setattr(importlib_metadata, "packages_distributions", lambda: {"unigen": owners})
    assert main(["models", "--json"]) == 0
