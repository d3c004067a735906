"""What the installed distributions say about themselves: the owner of the import name, --version."""

from __future__ import annotations

import sys

import importlib_metadata

import unigen
from unigen.cli import main


def test_the_import_package_belongs_to_unigen_core():
    owners = importlib_metadata.packages_distributions()["unigen"]
    assert {o.lower().replace("_", "-") for o in owners} == {"unigen-core"}
    assert importlib_metadata.version("unigen-core") == unigen.__version__


def test_a_clash_with_pypis_unrelated_unigen_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    # PyPI's audio-tagging `unigen` installs the same import package; here only its metadata, on sys.path
    site = tmp_path / "site"
    info = site / "unigen-0.3.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unigen\nVersion: 0.3.1\n")
    (info / "top_level.txt").write_text("unigen\n")
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    assert main(["train", "vae", "--data", "moons", "--steps", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'unigen' 0.3.1" in err[0] and "pip uninstall unigen unigen-core" in err[0], err
    assert not (tmp_path / "run").exists()


def test_no_clash_without_that_distribution(capsys):
    assert main(["models", "--json"]) == 0
