"""Loggers are plugins (unigen_register_loggers): csv, tensorboard, wandb and a third party's; sample
grids from fixed noise; a plain progress line per log interval off a terminal."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from clitools import run_cli as cli

import unigen
from unigen import checkpoint as ck
from unigen.plugins import reset_default_host

EXAMPLE_LOGGER = Path(__file__).resolve().parents[1] / "example-logger"




@pytest.mark.slow
def test_csv_tensorboard_grids_and_plain_lines(capsys, tmp_path):
    """The issue's command, as written: 300 steps, a CSV, TensorBoard events, three grids, six lines."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "vae"
    code, _, err = cli(capsys, "train", "vae", "--data", "digits", "--steps", "300", "--logger", "csv",
                       "--logger", "tensorboard", "--sample-every", "100", "--out", str(run))
    assert code == 0, err
    steps = [50, 100, 150, 200, 250, 300]  # log_every 50
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == steps
    assert {"loss/main", "lr", "steps_per_sec", "grad_norm/main"} <= set(rows[0])
    jsonl = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [float(r["loss/main"]) for r in rows] == [r["loss/main"] for r in jsonl]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"loss/main", "lr", "steps_per_sec", "grad_norm/main"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss/main")] == steps
    assert [e.step for e in events.Images("samples")] == [100, 200, 300]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"step_{s:08d}.png" for s in (100, 200, 300)]
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == [f"{s}/300" for s in steps]
    assert all("loss/main=" in line and "steps/s" in line and "ETA" in line for line in lines)


def test_sample_grids_use_fixed_noise_and_leave_training_unchanged(tmp_path):
    from unigen.training import SampleGrid

    seen = []

    class Images(unigen.Callback):
        def on_image(self, trainer, name, image):
            seen.append((trainer.step, name, image))

    a = unigen.train("vae", out=tmp_path / "a", steps=6, batch_size=16, log_every=3, sample_every=3,
                     callbacks=[Images()], quiet=True)
    b = unigen.train("vae", out=tmp_path / "b", steps=6, batch_size=16, log_every=3, quiet=True)
    wa, wb = (ck.load_weights(ck.latest_checkpoint(r.run_dir) / "model.safetensors") for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # drawing grids does not move the training RNG
    assert [(s, n) for s, n, _ in seen] == [(3, "samples"), (6, "samples")]
    assert len(list((tmp_path / "a" / "samples").glob("step_*.png"))) == 2
    grid = SampleGrid(tmp_path / "c", every=1, n=16, seed=5)

    class Host:  # the minimum a grid reads from the trainer
        model, device, host, step = a.model, torch.device("cpu"), unigen.default_host(), 0
        callbacks = []

        def log_image(self, name, image):
            """The grid also sends its picture to the loggers; this test has none."""

    first, second = grid.draw(Host()), grid.draw(Host())
    assert (first == second).all() and first.shape[0] > 8  # the same seeds every time


def test_a_resumed_run_never_logs_a_step_twice_in_the_csv(tmp_path):
    run = tmp_path / "r"
    unigen.train("vae", out=run, steps=8, batch_size=16, log_every=2, checkpoint_every=4, loggers=["csv"], quiet=True)
    (run / "checkpoints" / "latest").write_text("step_00000004")  # as if killed after the step-4 checkpoint
    unigen.train("vae", out=run, steps=8, resume=True, loggers=["csv"], quiet=True)
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    jsonl = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [int(r["step"]) for r in rows] == [r["step"] for r in jsonl] == [2, 4, 6, 8]


def test_an_unknown_logger_is_one_line_and_writes_nothing(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "vae", "--steps", "1", "--logger", "nosuch", "--out", str(tmp_path / "r"))
    assert code == 2 and "unknown logger 'nosuch'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.fixture
def example_logger_installed(tmp_path, monkeypatch):
    """tests/example-logger as an installed distribution: its source and a dist-info on sys.path."""
    site = tmp_path / "site"
    info = site / "unigen_example_logger-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unigen-example-logger\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[unigen]\nexample_logger = unigen_example_logger\n")
    monkeypatch.syspath_prepend(str(EXAMPLE_LOGGER / "src"))
    monkeypatch.syspath_prepend(str(site))
    reset_default_host()
    yield
    monkeypatch.undo()
    sys.modules.pop("unigen_example_logger", None)
    reset_default_host()


def test_a_third_party_logger_registers_through_the_hook_and_receives_every_scalar(
        capsys, tmp_path, example_logger_installed):
    run = tmp_path / "r"
    code, _, err = cli(capsys, "train", "vae", "--steps", "8", "--batch-size", "16", "--set", "trainer.log_every=2",
                       "--logger", "example", "--sample-every", "4", "--out", str(run), "--quiet")
    assert code == 0, err
    got = [json.loads(line) for line in (run / "example-logger.jsonl").read_text().splitlines()]
    scalars = [g for g in got if "scalars" in g]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [{"step": g["step"], **g["scalars"]} for g in scalars] == logged  # every scalar of every record
    assert [(g["step"], g["image"]) for g in got if "image" in g] == [(4, "samples"), (8, "samples")]
    code, out, _ = cli(capsys, "plugins", "--json")
    assert any(p.get("loggers") == ["example"] for p in json.loads(out)["plugins"])
    code, out, _ = cli(capsys, "--version")
    assert "unigen-example-logger 0.1.0" in out.splitlines()


@pytest.mark.slow
def test_wandb_logs_offline_into_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = unigen.train("vae", out=tmp_path / "r", steps=4, batch_size=16, log_every=2, loggers=["wandb"],
                       quiet=True)
    offline = list((run.run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
