"""`unigen new-plugin`: the written distribution passes its own tests unchanged; mistakes are one line.

The full check (marked ``venv``, run by ``nox -s scaffold``) does what a new author does, outside the
repository: a fresh virtual environment holding only the core wheel (and its dependencies), the
scaffold, ``pip install './demo[test]'``, ``pytest`` in it, and ``unigen train demo``. Under nox the
fresh venv reaches the session's installed dependencies through a ``.pth`` (``UNIGEN_SCAFFOLD_SITE``), so
pip installs unigen's wheels alone instead of resolving torch, scikit-learn, scipy... from the index
(minutes); run directly, pip resolves them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unigen.cli import main
from unigen.scaffold import files

ROOT = Path(__file__).resolve().parents[2]


def _fake_install(root: Path) -> None:
    """Make the written plugin discoverable from ``src`` without pip: a dist-info with its entry point."""
    info = root / "src" / "unigen_demo-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unigen-demo\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[unigen]\ndemo = unigen_demo.plugin\n")


def test_the_written_plugin_passes_its_own_tests_unchanged(tmp_path, capsys):
    assert main(["new-plugin", "demo", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "demo"
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == sorted(files("demo"))
    assert '[project.entry-points.unigen]\ndemo = "unigen_demo.plugin"' in (root / "pyproject.toml").read_text()
    _fake_install(root)
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "failed" not in out.stdout and " passed" in out.stdout


@pytest.mark.parametrize("name", ["Bad_Name", "1abc", "a--b", ""])
def test_a_bad_name_is_one_line_and_writes_nothing(tmp_path, capsys, name):
    assert main(["new-plugin", name, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "plugin name" in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep.txt").write_text("mine")
    assert main(["new-plugin", "demo", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["keep.txt"]


def _run(args: list[str], cwd: Path, timeout: int = 900) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.venv
def test_a_new_author_in_a_fresh_venv_with_only_the_core_wheel(tmp_path):
    torch_version = __import__("torch").__version__.split("+")[0]
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheels"),
          str(ROOT / "unigen-core")], tmp_path)
    (wheel,) = (tmp_path / "wheels").glob("unigen_core-*.whl")
    _run([sys.executable, "-m", "venv", str(tmp_path / "venv")], tmp_path)
    bin_ = tmp_path / "venv" / "bin"
    shared = os.environ.get("UNIGEN_SCAFFOLD_SITE")
    if shared:  # nox's scaffold session: the core's dependencies are installed there; pip sees them through this
        site = _run([str(bin_ / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
        Path(site.strip(), "_shared.pth").write_text(f"{shared}\n")
    # torch pinned to the running one (an unpinned torch would pull a multi-GB CUDA build)
    _run([str(bin_ / "pip"), "install", "-q", f"torch=={torch_version}", str(wheel)], tmp_path)
    _run([str(bin_ / "unigen"), "new-plugin", "demo"], tmp_path)
    _run([str(bin_ / "pip"), "install", "-q", "./demo[test]"], tmp_path)
    out = _run([str(bin_ / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path / "demo")
    assert "passed" in out and "failed" not in out
    _run([str(bin_ / "unigen"), "train", "demo", "--data", "moons", "--steps", "50", "--out", "run", "--quiet"],
         tmp_path)
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()
    listed = _run([str(bin_ / "unigen"), "models"], tmp_path)
    assert "demo" in listed
