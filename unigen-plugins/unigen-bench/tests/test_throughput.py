"""The ``throughput`` metric's timing helpers, and unigen-bench as a plugin: its commands and metric
exist exactly when it is installed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import unigen
from unigen.cli import main
from unigen.testing import untrained
from unigen_bench import throughput as tp


# -- throughput -----------------------------------------------------------------------------------
def test_median_seconds_skips_warmup_and_takes_the_median(monkeypatch):
    clock = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])  # timed runs last 5, 1, 3 seconds
    calls = []
    monkeypatch.setattr(tp.time, "perf_counter", lambda: next(clock))
    assert tp.median_seconds(lambda: calls.append(1), warmup=2, repeats=3) == 3.0
    assert len(calls) == 5


def test_samples_per_sec_from_chunks_drops_the_first_chunk():
    assert tp.samples_per_sec_from_chunks(((100, 10.0), (100, 1.0), (100, 2.0), (100, 0.5))) == 100.0
    assert tp.samples_per_sec_from_chunks(((50, 2.0),)) == 25.0
    assert tp.samples_per_sec_from_chunks(()) is None


def test_training_throughput_leaves_the_model_untouched():
    pytest.importorskip("unigen_vae")  # the bench runs real models; the vae family is the one it uses
    model = untrained("vae")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = tp.training_throughput(model, unigen.load_dataset("digits"), unigen.TrainerConfig(batch_size=32),
                                 steps=2, warmup=1, repeats=2)
    assert out["train_steps_per_sec"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- the plugin -------------------------------------------------------------------------------------
def test_the_commands_and_the_metric_come_from_the_plugin(monkeypatch, capsys):
    host = unigen.default_host()
    assert host.metrics["throughput"].plugin == "bench"
    assert host.ids_of("bench") == {"metrics": ["throughput"]}  # no model ids
    monkeypatch.setenv("UNIGEN_MALLOC", "system")
    for command in ("bench", "speed"):
        try:
            main([command, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        assert f"usage: unigen {command}" in capsys.readouterr().out


def test_without_the_plugin_bench_and_speed_are_one_line_hints():
    env = {"UNIGEN_BLOCK_PLUGINS": "bench", "UNIGEN_MALLOC": "system", "PATH": ""}
    for command in ("bench", "speed"):
        done = subprocess.run([sys.executable, "-m", "unigen", command, "--quick"], capture_output=True, text=True,
                              env=env)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.strip().splitlines() == [
            f"unigen: error: 'unigen {command}' comes with unigen-bench, which is not installed: pip install unigen-bench"]


def test_importing_unigen_imports_no_benchmark_code():
    code = "import unigen, unigen.cli, sys; print([m for m in sys.modules if ('bench' in m or 'speed' in m) and not m.startswith('torch.')])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
