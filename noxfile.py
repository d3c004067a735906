"""Test sessions. `nox` runs them all; `nox -s tests`, `nox -k vae` run some.

Process start-up and installs, not the tests' training, set how long a run takes on a small machine, so
the sessions share what they can:

- the pinned dev requirements (torch, pytest, ...) are installed once with ``pip install --target
  .nox/_shared`` (again only when requirements-dev.txt changes), without byte-compiling: a module is
  compiled the first time it is imported, so only what runs is compiled;
- ``lint``, ``typecheck``, ``docs``, ``tests``, ``defaults`` and ``bench`` run in one virtual environment,
  ``.nox/_dev``: the core and every family installed editable once (again only when a pyproject changes);
- each ``family`` session runs in ``.nox/_core`` (the core alone, editable) with its one distribution
  installed by pip into a folder of its own on ``PYTHONPATH``, so it sees exactly the core and that family,
  whatever else the environment that runs nox has installed.

Every virtual environment reaches the shared requirements through a ``.pth`` file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nox
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent for p in (ROOT / "unigen-plugins").glob("unigen-*/pyproject.toml"))
FAMILIES = [p.name.removeprefix("unigen-") for p in PLUGINS]
CORE = ROOT / "unigen-core"
EXAMPLE = ROOT / "tests" / "example-plugin"
EXAMPLE_LOGGER = ROOT / "tests" / "example-logger"
# tests/contract/test_contract.py's colour run (3x32x32 shapes), in ``tests`` only
COLOUR_TEST = "test_image_model_trains_and_samples_in_colour_at_32x32"

nox.options.sessions = ["lint", "typecheck", "docs", "tests", "family", "third_party", "scaffold"]
nox.options.reuse_existing_virtualenvs = True
# The folder is named site-packages on purpose: dill (used by Hugging Face datasets to fingerprint data)
# pickles modules that live outside a "site-packages" path by value, and fails on pyarrow types there.
SHARED = ROOT / ".nox" / "_shared" / "site-packages"
DEV_VENV = ROOT / ".nox" / "_dev"
CORE_VENV = ROOT / ".nox" / "_core"
REQUIREMENTS = ROOT / "requirements-dev.txt"
PIP = ["--no-deps", "--no-build-isolation", "-q"]


def _share_dev_requirements(session: nox.Session) -> None:
    """Install requirements-dev.txt once into SHARED."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()
    stamp = SHARED / ".requirements-sha256"
    if not (stamp.exists() and stamp.read_text() == digest):
        shutil.rmtree(SHARED, ignore_errors=True)
        session.log(f"installing the shared dev requirements into {SHARED} (once)")
        session.run(sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                    "--target", str(SHARED), "-r", str(REQUIREMENTS), external=True)
        stamp.write_text(digest)


def _venv(session: nox.Session, where: Path, *editable: Path) -> Path:
    """The virtual environment at ``where``, reaching SHARED through a ``.pth``, with ``editable`` installed
    editable without dependencies; made once, and again when SHARED or one of their pyprojects changes (the code
    itself is live). Returns its python."""
    _share_dev_requirements(session)
    python = where / "bin" / "python"
    digest = hashlib.sha256((SHARED / ".requirements-sha256").read_bytes() + b"".join(
        str(p).encode() + (p / "pyproject.toml").read_bytes() for p in editable)).hexdigest()
    stamp = where / ".unigen-installed"
    if not (python.exists() and stamp.exists() and stamp.read_text() == digest):
        shutil.rmtree(where, ignore_errors=True)
        session.log(f"making {where} ({', '.join(p.name for p in editable)} editable)")
        # virtualenv (nox's own backend) seeds pip, setuptools and wheel, which builds without isolation need
        session.run(sys.executable, "-m", "virtualenv", "-q", str(where), external=True)
        site = session.run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                           silent=True, external=True).strip().splitlines()[-1]
        Path(site, "_unigen_shared.pth").write_text(f"{SHARED}\n")
        if editable:
            session.run(str(python), "-m", "pip", "install", *PIP, "--disable-pip-version-check",
                        *[a for p in editable for a in ("-e", str(p))], external=True)
        stamp.write_text(digest)
    return python


def _run(session: nox.Session, python: Path, *args: str, env: dict[str, str] | None = None, **kwargs):
    """``args`` with ``python`` (a command name: that venv's script of that name), the venv first on PATH."""
    bin_ = python.parent
    command = str(python) if args[0] == "python" else str(bin_ / args[0])
    path = f"{bin_}{os.pathsep}{os.environ.get('PATH', '')}"
    return session.run(command, *args[1:], env={"PATH": path, "VIRTUAL_ENV": str(bin_.parent), **(env or {})},
                       external=True, **kwargs)


def _dev(session: nox.Session) -> Path:
    """``.nox/_dev``: the core and every family, editable."""
    return _venv(session, DEV_VENV, CORE, *PLUGINS)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    _run(session, _dev(session), "python", "-m", "ruff", "check", ".")


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    """mypy over the core, every distribution of unigen-plugins and the example plugin, as shipped
    (py.typed); settings in pyproject.toml. A registered buffer is declared on its class
    (``mask: Tensor`` in the class body), so mypy does not read it as ``Tensor | Module``."""
    python = _dev(session)
    packages = [p for d in [*PLUGINS, EXAMPLE] for p in (d / "src").iterdir() if (p / "py.typed").exists()]
    _run(session, python, "python", "-m", "mypy", "unigen-core/src/unigen", *map(str, packages))


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml) built with --strict: any warning fails. The family pages and the
    CLI reference are generated from the installed models and parser (docs/gen_families.py, a mkdocs hook)."""
    python = _dev(session)
    site = ROOT / ".nox" / "_site"
    _run(session, python, "python", "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site),
         env={"NO_MKDOCS_2_WARNING": "1"})
    session.log(f"site: {site / 'index.html'}")


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Everything installed: the core tests, the contract over every id, every family's tests."""
    python = _dev(session)
    # worksteal: an idle worker takes queued tests from the busy one (the durations here range from
    # milliseconds to a minute, so plain `load` scheduling can leave one worker alone at the end)
    workers = session.posargs or ["-n", "2", "--dist", "worksteal"]
    _run(session, python, "python", "-m", "pytest", *workers, "-m", "not venv and not heavy", "tests/core",
         "tests/contract", *[str(p / "tests") for p in PLUGINS if (p / "tests").is_dir()])


@nox.session(venv_backend="none")
def defaults(session: nox.Session) -> None:
    """Pure defaults beat the untrained model on the larger kinds of data too: every image model trained
    briefly on 28x28 fashion-mnist and 32x32 shapes (tests/contract/test_defaults.py, marked ``heavy``;
    2-D vectors and 8x8 digits run in ``tests``). Not in the default run: 58 cases, a 28x28 case of 100 steps
    takes 3-5 minutes of one loaded core, an iterative sampler's more (measured times in the README)."""
    workers = session.posargs or ["-n", "2"]
    _run(session, _dev(session), "python", "-m", "pytest", *workers, "-m", "heavy", "--durations=0",
         "tests/contract/test_defaults.py")


@nox.session(venv_backend="none")
@nox.parametrize("family", FAMILIES, ids=FAMILIES)
def family(session: nox.Session, family: str) -> None:
    """Only the core and one distribution: the core's venv (``.nox/_core``) and the family installed by pip (built
    from its pyproject, not editable) into ``.nox/_families/NAME`` on PYTHONPATH. tests/contract/test_isolation.py
    then checks that it registers only its own ids, provides what the core's catalogue says (model ids, commands)
    and loads without failures, and the rest of tests/contract runs the contract and the float64 check over its
    ids alone, in one process (a family's ids take seconds: two workers would cost more to start than they save).
    The family's own tests and the 3x32x32 colour run of each image model run in ``tests`` (with every
    distribution installed), not again here."""
    python = _venv(session, CORE_VENV, CORE)
    target = ROOT / ".nox" / "_families" / family
    shutil.rmtree(target, ignore_errors=True)
    _run(session, python, "python", "-m", "pip", "install", *PIP, "--disable-pip-version-check", "--target",
         str(target), str(ROOT / "unigen-plugins" / f"unigen-{family}"))
    _run(session, python, "python", "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-m", "not slow",
         "-k", f"not {COLOUR_TEST}", "tests/contract",
         env={"PYTHONPATH": str(target), "UNIGEN_ISOLATED_FAMILY": family})


@nox.session
def third_party(session: nox.Session) -> None:
    """The example plugin as a third party uses it: built wheels installed with their dependencies (not
    editable), driven through the CLI, and its own test suite, which runs the contract kit, copied out of
    the repository and run there."""
    _share_dev_requirements(session)
    site = session.run("python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       silent=True).strip().splitlines()[-1]
    Path(site, "_unigen_shared.pth").write_text(f"{SHARED}\n")
    tmp = Path(session.create_tmp())
    wheels = tmp / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    session.run("python", "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                str(CORE), str(EXAMPLE))
    core, example = (next(wheels.glob(f"{name}-*.whl")) for name in ("unigen_core", "unigen_gmm"))
    session.run("python", "-m", "pip", "uninstall", "-q", "-y", "unigen-core", "unigen-gmm")  # a reused venv
    session.install("-q", "--no-build-isolation", str(core), f"{example}[test]")  # dependencies resolved
    session.install(*PIP, str(EXAMPLE_LOGGER))  # a third-party logger, from its source
    out = session.run("unigen", "models", "--json", silent=True)
    if "gmm" not in [r["id"] for r in json.loads(out)]:
        session.error("the example plugin's model 'gmm' is not listed")
    run = tmp / "gmm-run"
    shutil.rmtree(run, ignore_errors=True)
    session.run("unigen", "train", "gmm", "--data", "moons", "--steps", "300", "--out", str(run), "--quiet",
                "--logger", "example")  # a third-party logger, found through unigen_register_loggers
    if not (run / "example-logger.jsonl").exists():
        session.error("the example logger received nothing")
    session.run("unigen", "sample", str(run), "--n", "500", "--out", str(tmp / "gmm.png"))
    session.run("unigen", "eval", str(run), "--json")
    with tempfile.TemporaryDirectory(prefix="unigen-third-party-") as outside:  # out of the repository
        copy = Path(outside) / "example-plugin"
        shutil.copytree(EXAMPLE / "tests", copy / "tests")  # the tests only: the code is the installed wheel
        shutil.copy(EXAMPLE / "pyproject.toml", copy)
        with session.chdir(copy):
            session.run("python", "-m", "pytest", "-n", "2", "-p", "no:cacheprovider")


@nox.session(venv_backend="none")
def scaffold(session: nox.Session) -> None:
    """`unigen new-plugin` as a new author meets it: a fresh venv holding only the core wheel, the written
    plugin installed with pip, its tests and `unigen train` (tests/core/test_scaffold.py, marker venv). The fresh
    venv reaches the shared dev requirements through a ``.pth`` (UNIGEN_SCAFFOLD_SITE), so pip finds the core's
    dependencies installed and installs unigen's wheels alone; ``nox -s "wheels(NAME)"`` resolves them from the
    index."""
    _run(session, _venv(session, CORE_VENV, CORE), "python", "-m", "pytest", "-m", "venv", "-p", "no:cacheprovider",
         "tests/core/test_scaffold.py", env={"UNIGEN_SCAFFOLD_SITE": str(SHARED)})


TORCH = "torch==2.13.0"  # the CPU build on this machine's disk; any other torch would be a multi-GB download


def _fresh_venv(session: nox.Session, where: Path, torch_dir: Path) -> Path:
    """A new virtual environment at ``where`` whose only pre-installed package is torch 2.13.0 (from
    ``torch_dir``, installed there once without dependencies through a ``.pth``, so pip sees it as
    installed and resolves everything else, torch's own dependencies included). Returns its python."""
    shutil.rmtree(where, ignore_errors=True)
    session.run(sys.executable, "-m", "venv", str(where), external=True)
    python = where / "bin" / "python"
    site = session.run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       silent=True, external=True).strip().splitlines()[-1]
    Path(site, "_torch.pth").write_text(f"{torch_dir}\n")
    return python


def _torch_dir(session: nox.Session, tmp: Path) -> Path:
    torch_dir = tmp / "torch"
    if not (torch_dir / ".done").exists():
        shutil.rmtree(torch_dir, ignore_errors=True)
        session.run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(torch_dir), TORCH,
                    external=True)
        (torch_dir / ".done").touch()
    return torch_dir


def _build_wheels(session: nox.Session, tmp: Path, name: str = "wheels") -> Path:
    wheels = tmp / name
    shutil.rmtree(wheels, ignore_errors=True)
    # Build isolation (pip fetches setuptools and wheel for the build): the interpreter running nox
    # need not have them, as a user's would not.
    session.run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                str(ROOT / "unigen-core"), *map(str, PLUGINS), str(EXAMPLE), external=True)
    return wheels


def _wheel(wheels: Path, distribution: str) -> str:
    return str(next(wheels.glob(f"{distribution.replace('-', '_')}-*.whl")))


def _smoke(session: nox.Session, unigen: str, ids: list[str], run_dir: Path) -> None:
    """Train the family's models for 3 steps on captioned digits in turn until one samples (a model that
    cannot sample, such as I-JEPA, or takes only vectors, such as DiffFlow, is refused with exit code 2 and
    the next is tried)."""
    for model_id in ids:
        shutil.rmtree(run_dir, ignore_errors=True)
        train = subprocess.run([unigen, "train", model_id, "--data", "digits-captions", "--steps", "3",
                                "--batch-size", "16", "--out", str(run_dir), "--quiet"], capture_output=True, text=True)
        if train.returncode == 2:  # refused in one line (vectors only; consistency needs a teacher run): the next
            session.log(f"smoke: {model_id}: {train.stderr.strip()}")
            continue
        if train.returncode != 0:
            session.error(f"unigen train {model_id} failed ({train.returncode}): {train.stderr.strip()}")
        try:  # an adaptive ODE solve of a 3-step CNF can take minutes: the next model then
            sample = subprocess.run([unigen, "sample", str(run_dir), "--n", "4", "--out", str(run_dir / "s.npy")],
                                    capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            session.log(f"smoke: sampling {model_id} took over 60 s; trying the next model")
            continue
        if sample.returncode == 0:
            session.log(f"smoke: {model_id} trained and sampled: {sample.stdout.strip()}")
            return
        if sample.returncode != 2 or "does not support sample" not in sample.stderr:
            session.error(f"unigen sample {model_id} failed ({sample.returncode}): {sample.stderr.strip()}")
    session.error(f"no model among {ids} samples")


@nox.session(venv_backend="none")
@nox.parametrize("family", FAMILIES, ids=FAMILIES)
def wheels(session: nox.Session, family: str) -> None:
    """One family as a user installs it: the core's and the family's built wheels in a fresh venv, every
    other dependency resolved by pip (not editable, not --no-deps; torch pinned by a constraints file),
    then its tests, the contract over its ids and a CLI smoke test (models, a 3-step train, sample).
    Not in the default run: each family is a new venv (about 3 minutes each on a loaded 2-core machine)."""
    tmp = ROOT / ".nox" / "_wheels"
    tmp.mkdir(parents=True, exist_ok=True)
    wheels = _build_wheels(session, tmp)
    torch_dir = _torch_dir(session, tmp)
    constraints = tmp / "constraints.txt"
    constraints.write_text(f"{TORCH}\n")
    python = str(_fresh_venv(session, tmp / f"venv-{family}", torch_dir))
    # unigen-bench has no models: its tests bench the vae family's and draw pictures with matplotlib
    extra = ["[plots]", _wheel(wheels, "unigen-vae")] if family == "bench" else [""]
    session.run(python, "-m", "pip", "install", "-q", "-c", str(constraints), _wheel(wheels, "unigen-core") + "[testing]",
                _wheel(wheels, f"unigen-{family}") + extra[0], *extra[1:], "pytest-xdist>=3.5", external=True)
    session.run(python, "-m", "pip", "check", external=True)
    unigen = str(Path(python).parent / "unigen")
    rows = json.loads(session.run(unigen, "models", "--json", silent=True, external=True))
    session.run(unigen, "--version", external=True)
    if rows:  # a tiny train and sample through the CLI, with the installed wheels
        _smoke(session, unigen, [r["id"] for r in rows], tmp / f"run-{family}")
    path = ROOT / "unigen-plugins" / f"unigen-{family}"
    with session.chdir(tmp):  # outside the repository: the tests import the installed wheels, not src/
        session.run(python, "-m", "pytest", "-q", "-n", "2", "-m", "not slow", "-p", "no:cacheprovider",
                    "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                    str(ROOT / "tests" / "contract"), str(path / "tests"), external=True)


LOWER_BOUNDED = ("torch", "numpy", "attrs", "pluggy")


def lower_bounds_of(pyproject: Path, names: tuple[str, ...] = LOWER_BOUNDED) -> dict[str, str]:
    """``name -> lowest version`` from the ``>=`` bounds of a pyproject's dependencies."""
    found = {}
    for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        req = Requirement(line)
        lows = [s.version for s in req.specifier if s.operator == ">="]
        if req.name in names and lows:
            found[req.name] = lows[0]
    return found


@nox.session(venv_backend="none")
def lower_bounds(session: nox.Session) -> None:
    """Every distribution from its wheel with torch, numpy, attrs and pluggy at the lowest versions the core's
    pyproject allows (pinned by a constraints file written from the bounds; pip has no lowest-version
    resolution), the rest resolved; then the CLI tests and the contract over every id."""
    tmp = ROOT / ".nox" / "_wheels"
    tmp.mkdir(parents=True, exist_ok=True)
    wheels = _build_wheels(session, tmp, "wheels-lower-bounds")
    lows = lower_bounds_of(ROOT / "unigen-core" / "pyproject.toml")
    if Version(lows.get("torch", "0")) != Version(TORCH.split("==")[1]):
        session.error(f"torch's lower bound {lows.get('torch')} is not the tested {TORCH}")
    constraints = tmp / "lower-bounds.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(lows.items())))
    session.log(f"lower bounds: {constraints.read_text().split()}")
    python = str(_fresh_venv(session, tmp / "venv-lower-bounds", _torch_dir(session, tmp)))
    session.run(python, "-m", "pip", "install", "-q", "-c", str(constraints), _wheel(wheels, "unigen-core") + "[testing]",
                *[_wheel(wheels, f"unigen-{f}") for f in FAMILIES], "pytest-xdist>=3.5", external=True)
    session.run(python, "-m", "pip", "check", external=True)
    versions = session.run(python, "-c", "import attrs, numpy, pluggy, torch; "
                           "print(torch.__version__, numpy.__version__, attrs.__version__, pluggy.__version__)",
                           silent=True, external=True)
    session.log(f"installed torch, numpy, attrs, pluggy: {versions.strip()}")
    with session.chdir(tmp):
        session.run(python, "-m", "pytest", "-q", "-n", "2", "-m", "not slow", "-p", "no:cacheprovider",
                    "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                    str(ROOT / "tests" / "contract" / "test_contract.py"), str(ROOT / "tests" / "core" / "test_cli.py"),
                    external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Speed report (ratios measured in one run): `nox -s bench`."""
    _run(session, _dev(session), "unigen", "speed", *(session.posargs or ["--quick"]))
