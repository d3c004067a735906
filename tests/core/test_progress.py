"""Progress bars on a terminal (a pseudo-terminal here): `unigen sample` over its samples and the
solver steps of each chunk, `unigen eval` over its metrics; none off a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

import unigen
from unigen.cli import main


def on_a_terminal(*argv: str, cwd: Path) -> str:
    """Run ``unigen ARGV`` with stdout and stderr on a pseudo-terminal; return what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    unigen_cmd = Path(sys.executable).parent / "unigen"
    proc = subprocess.Popen([str(unigen_cmd), *argv], stdin=slave, stdout=slave, stderr=slave, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("progress") / "ddpm"
    unigen.train("ddpm", out=out, steps=1, batch_size=8, timesteps=20, width=8, mults=(1, 2), hidden=32, depth=2,
                 quiet=True)
    return out


def test_sample_shows_bars_over_samples_and_solver_steps_on_a_terminal(ddpm_run, tmp_path):
    drawn = on_a_terminal("sample", str(ddpm_run), "--n", "6", "--batch-size", "3", "--out", "x.png", cwd=tmp_path)
    assert "sample ddpm" in drawn and "6/6" in drawn  # the samples, chunk by chunk
    # each chunk's 20 ancestral steps (a transient bar: its frames, not necessarily the last, are drawn)
    assert "solver steps" in drawn and "/20 [" in drawn
    assert (tmp_path / "x.png").exists()


def test_eval_shows_a_bar_over_its_metrics_on_a_terminal(ddpm_run, tmp_path):
    drawn = on_a_terminal("eval", str(ddpm_run), "--metrics", "nll", "--n", "8", cwd=tmp_path)
    assert "eval" in drawn and "1/1" in drawn


def test_no_bars_off_a_terminal(ddpm_run, tmp_path, capsys):
    assert main(["sample", str(ddpm_run), "--n", "2", "--out", str(tmp_path / "x.npy")]) == 0
    err = capsys.readouterr().err
    assert "solver steps" not in err and "%|" not in err
