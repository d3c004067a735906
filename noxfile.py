"""Test sessions. `nox` runs them all; `nox -s tests`, `nox -k vae` run some.

Every session shares one torch install: sessions are virtualenvs with
``--system-site-packages`` over the interpreter that has requirements-dev.txt installed (see
README), so only unigen's own distributions are installed per session, editable and without
dependencies. Never install unigen itself into that base interpreter, or the per-family sessions
would see every family.
"""

from __future__ import annotations

import json
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent for p in (ROOT / "unigen-plugins").glob("unigen-*/pyproject.toml"))
FAMILIES = [p.name.removeprefix("unigen-") for p in PLUGINS]
EXAMPLE = ROOT / "tests" / "example-plugin"

nox.options.sessions = ["lint", "tests", "family", "third_party"]
nox.options.reuse_existing_virtualenvs = True
VENV = ["--system-site-packages"]
PIP = ["--no-deps", "--no-build-isolation", "-q"]


def _install(session: nox.Session, *paths: Path, editable: bool = True) -> None:
    args = [a for p in paths for a in (["-e", str(p)] if editable else [str(p)])]
    session.install(*PIP, *args)


@nox.session(venv_params=VENV)
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".", external=True)


@nox.session(venv_params=VENV)
def tests(session: nox.Session) -> None:
    """Everything installed: the core tests, the contract over every id, every family's tests."""
    _install(session, ROOT / "unigen-core", *PLUGINS)
    workers = session.posargs or ["-n", "2"]
    session.run("pytest", *workers, "tests/core", "tests/contract",
                *[str(p / "tests") for p in PLUGINS if (p / "tests").is_dir()])


@nox.session(venv_params=VENV)
@nox.parametrize("family", FAMILIES, ids=FAMILIES)
def family(session: nox.Session, family: str) -> None:
    """Only the core and one family: it must list only its own ids and pass the contract alone."""
    path = ROOT / "unigen-plugins" / f"unigen-{family}"
    _install(session, ROOT / "unigen-core", path)
    out = session.run("unigen", "models", "--json", silent=True)
    rows = json.loads(out)
    foreign = [r["id"] for r in rows if r["plugin"] != family]
    if not rows or foreign:
        session.error(f"family {family!r} session lists {[r['id'] for r in rows]}; foreign ids: {foreign}")
    session.log(f"{family}: {', '.join(r['id'] for r in rows)}")
    session.run("pytest", "-n", "2", "-m", "not slow", "tests/contract", str(path / "tests"))


@nox.session(venv_params=VENV)
def third_party(session: nox.Session) -> None:
    """Install the example plugin as a user would (not editable) and drive it through the CLI."""
    _install(session, ROOT / "unigen-core")
    session.install(*PIP, str(EXAMPLE))
    out = session.run("unigen", "models", "--json", silent=True)
    if "gmm" not in [r["id"] for r in json.loads(out)]:
        session.error("the example plugin's model 'gmm' is not listed")
    tmp = Path(session.create_tmp())
    run = tmp / "gmm-run"
    session.run("unigen", "train", "gmm", "--data", "moons", "--steps", "300", "--out", str(run), "--quiet")
    session.run("unigen", "sample", str(run), "--n", "500", "--out", str(tmp / "gmm.png"))
    session.run("unigen", "eval", str(run), "--json")
    session.run("pytest", "-n", "2", "tests/contract", str(EXAMPLE / "tests"))


@nox.session(venv_params=VENV)
def bench(session: nox.Session) -> None:
    """Speed report (ratios measured in one run): `nox -s bench`."""
    _install(session, ROOT / "unigen-core", *PLUGINS)
    session.run("unigen", "speed", *(session.posargs or ["--quick"]))
