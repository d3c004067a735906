"""Every fenced ```python and ```bash block of README.md runs, so the README cannot drift from the code.

Each block runs in its own temporary directory with small step counts substituted (``--steps N`` and
``steps=N`` become ``--steps 20`` / ``steps=20``); nothing else is changed. A block that needs what a
test cannot have (a fresh environment, two processes, your own files, a long benchmark) is preceded
in the README by ``<!-- readme-test: skip (reason) -->`` and is reported as skipped with that reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+?)\)\s*-->")
STEPS = 20


def blocks() -> list:
    """(language, first line number, code, skip reason or None) of every python/bash block."""
    out, lines, i = [], README.read_text().splitlines(), 0
    while i < len(lines):
        fence = re.fullmatch(r"```(python|bash)\s*", lines[i])
        if not fence:
            i += 1
            continue
        end = lines.index("```", i + 1)
        before = [line for line in lines[max(0, i - 3):i] if line.strip()]
        marker = SKIP.search(before[-1]) if before else None
        out.append((fence.group(1), i + 1, "\n".join(lines[i + 1:end]), marker.group(1) if marker else None))
        i = end + 1
    return out


def small(code: str) -> str:
    code = re.sub(r"--steps \d+", f"--steps {STEPS}", code)
    return re.sub(r"\bsteps=\d+", f"steps={STEPS}", code)


BLOCKS = blocks()


def test_the_readme_has_blocks_and_runs_most_of_them():
    assert len(BLOCKS) >= 5 and sum(reason is None for *_, reason in BLOCKS) >= 2


@pytest.mark.parametrize("lang, line, code, reason", BLOCKS, ids=[f"{b[0]}-line{b[1]}" for b in BLOCKS])
def test_readme_block_runs(lang, line, code, reason, tmp_path, monkeypatch):
    if reason:
        pytest.skip(f"README.md line {line}: {reason}")
    monkeypatch.chdir(tmp_path)
    if lang == "bash":
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", small(code)], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"README.md line {line}:\n{done.stderr[-3000:]}"
        return
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(small(code), f"README.md:{line}", "exec"), namespace)
    if "load_run" in code:  # the quickstart: load_run returns the trained model, weights and all
        loaded, trained = namespace["run"].model.state_dict(), namespace["model"].state_dict()
        assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in loaded)
