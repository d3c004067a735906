"""Python and the command line are one workflow: the same run directory, the same trainer settings,
resumable from either side; configs keep [model] and [trainer] apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clitools import run_cli as cli

import unigen
from unigen import checkpoint as ck


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return ck.load_weights(ck.latest_checkpoint(run) / "model.safetensors")


def test_a_python_run_is_a_cli_run_and_resumes_from_the_cli_bit_identically(capsys, tmp_path):
    data = unigen.load_dataset("digits")
    torch.manual_seed(0)  # the CLI seeds with the trainer's seed before building the model
    model = unigen.build_model("vae", data, {"z_dim": 4})
    unigen.Trainer(model, data, unigen.TrainerConfig(steps=10, batch_size=32), run_dir=tmp_path / "py",
                   quiet=True).fit()
    assert unigen.load_run(tmp_path / "py").record["model_config"]["z_dim"] == 4
    code, _, err = cli(capsys, "train", "vae", "--steps", "20", "--out", str(tmp_path / "py"), "--resume", "--quiet")
    assert code == 0, err
    code, _, err = cli(capsys, "train", "vae", "--steps", "20", "--batch-size", "32", "--set", "z_dim=4",
                       "--out", str(tmp_path / "cli"), "--quiet")
    assert code == 0, err
    py, ref = ck.read_run(tmp_path / "py"), ck.read_run(tmp_path / "cli")
    assert py == ref  # one record builder: the same run.json, key for key
    a, b = _weights(tmp_path / "py"), _weights(tmp_path / "cli")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_cli_run_resumes_from_python_and_the_handle_samples_and_evaluates(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "vae", "--steps", "10", "--batch-size", "32", "--set", "z_dim=4",
                       "--out", str(tmp_path / "cli"), "--quiet")
    assert code == 0, err
    run = unigen.train("vae", out=tmp_path / "cli", resume=True, steps=20, quiet=True)
    ref = unigen.train("vae", out=tmp_path / "ref", steps=20, batch_size=32, z_dim=4, quiet=True)
    a, b = _weights(run.run_dir), _weights(ref.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert run.run_dir == tmp_path / "cli" and run.model.config.z_dim == 4
    assert run.sample(5).shape == (5, 1, 8, 8)
    result = run.eval("nll", n=50)
    assert result["nll_kind"] == "bound"
    saved = json.loads((run.run_dir / "eval.json").read_text())
    assert saved["nll_bits_per_dim"] == result["nll_bits_per_dim"] and saved["checkpoint"] == "step_00000020"


def test_python_and_cli_give_a_gan_the_same_trainer_settings(capsys, tmp_path):
    gan_defaults = unigen.build_model("gan", unigen.load_dataset("digits").info).trainer_defaults
    assert gan_defaults  # the test is void without model defaults
    for extra in ((), ("--lr", "0.001")):
        kwargs = {"lr": 0.001} if extra else {}
        py = unigen.train("gan", out=tmp_path / f"py{len(extra)}", steps=0, quiet=True, **kwargs)
        code, _, err = cli(capsys, "train", "gan", "--steps", "0", "--out", str(tmp_path / f"cli{len(extra)}"),
                           "--quiet", *extra)
        assert code == 0, err
        trainer = ck.read_run(tmp_path / f"cli{len(extra)}")["trainer"]
        assert py.record["trainer"] == trainer
        for k, v in gan_defaults.items():  # the model's defaults apply, the user's settings win
            want = 0.001 if (k == "lr" and extra) else v
            assert trainer[k] == (list(want) if isinstance(want, tuple) else want), k
    # A TrainerConfig built in Python counts only the fields it was given as the user's.
    data = unigen.load_dataset("digits")
    trainer = unigen.Trainer(unigen.build_model("gan", data), data, unigen.TrainerConfig(steps=0), quiet=True)
    assert tuple(trainer.config.betas) == tuple(gan_defaults["betas"])


def test_trainer_table_never_reaches_the_model_config(capsys, tmp_path):
    # vq-vae's config has its own ema_decay (the codebook's); the trainer's is the weights' EMA.
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\ncode_dim = 4\n\n[trainer]\nema_decay = 0.5\nsteps = 0\n")
    code, _, err = cli(capsys, "train", "vq-vae", "--config", str(toml), "--out", str(tmp_path / "a"), "--quiet")
    assert code == 0, err
    record = ck.read_run(tmp_path / "a")
    assert record["trainer"]["ema_decay"] == 0.5
    assert record["model_config"]["ema_decay"] == 0.99 and record["model_config"]["code_dim"] == 4


def test_a_key_of_both_configs_must_be_qualified(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "vq-vae", "--steps", "0", "--set", "ema_decay=0.5", "--out", str(tmp_path / "a"))
    assert code == 2 and "model.ema_decay" in err and "trainer.ema_decay" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()  # nothing written
    code, _, err = cli(capsys, "train", "vq-vae", "--steps", "0", "--set", "model.ema_decay=0.9",
                       "--set", "trainer.ema_decay=0.5", "--out", str(tmp_path / "b"), "--quiet")
    assert code == 0, err
    record = ck.read_run(tmp_path / "b")
    assert record["model_config"]["ema_decay"] == 0.9 and record["trainer"]["ema_decay"] == 0.5
    code, _, err = cli(capsys, "train", "vae", "--steps", "0", "--set", "trainer.nokey=1", "--out", str(tmp_path / "c"))
    assert code == 2 and "unknown trainer setting 'nokey'" in err


def test_version_lists_every_installed_unigen_distribution(capsys):
    from importlib_metadata import version

    code, out, _ = cli(capsys, "--version")
    assert code == 0
    lines = dict(line.split(" ") for line in out.splitlines())
    assert lines["unigen-core"] == version("unigen-core") and out.splitlines()[0].startswith("unigen-core ")
    assert lines["unigen-vae"] == version("unigen-vae")


@pytest.mark.parametrize("bad", [{"steps": -1}, {"nokey": 1}])
def test_python_train_mistakes_are_config_errors(tmp_path, bad):
    with pytest.raises(unigen.ConfigError):
        unigen.train("vae", out=tmp_path / "r", quiet=True, **bad)
