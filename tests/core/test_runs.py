"""Pictures and listings of run directories: `unigen plot RUN`, `unigen runs [DIR]`."""

from __future__ import annotations

import json
import sys

import pytest
from clitools import run_cli as cli
from PIL import Image

import unigen


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    unigen.train("gan", out=root / "gan", steps=6, batch_size=16, log_every=2, quiet=True)
    vae = unigen.train("vae", out=root / "sub" / "vae", steps=4, batch_size=16, log_every=2, quiet=True)
    vae.eval("nll", n=20)
    (root / "not-a-run").mkdir()
    return root


def test_plot_draws_one_curve_per_loss_group(runs, capsys):
    groups = sorted(k.split("/", 1)[1] for k in json.loads((runs / "gan" / "metrics.jsonl").read_text()
                                                           .splitlines()[0]) if k.startswith("loss/"))
    assert len(groups) == 2  # the GAN's discriminator and generator
    from unigen.runs import plot

    out, drawn = plot(runs / "gan")
    assert sorted(drawn) == groups and out == runs / "gan" / "losses.png"
    code, stdout, err = cli(capsys, "plot", str(runs / "gan"), "--out", str(runs / "gan.png"))
    assert code == 0, err
    with Image.open(runs / "gan.png") as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_plot_mistakes_are_one_line(runs, capsys, monkeypatch):
    code, _, err = cli(capsys, "plot", str(runs / "not-a-run"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code, _, err = cli(capsys, "plot", str(runs / "gan"))
    assert code == 2 and "pip install 'unigen-core[plots]'" in err and len(err.strip().splitlines()) == 1


def test_runs_lists_model_data_steps_losses_and_eval(runs, capsys):
    code, out, err = cli(capsys, "runs", str(runs), "--json")
    assert code == 0, err
    rows = {r["model"]: r for r in json.loads(out)}
    assert set(rows) == {"gan", "vae"}
    assert rows["gan"]["steps"] == "6/6" and rows["gan"]["data"] == "digits" and len(rows["gan"]["losses"]) == 2
    assert rows["vae"]["eval"]["nll_bits_per_dim"] > 0 and rows["vae"]["eval_checkpoint"] == "step_00000004"
    code, out, _ = cli(capsys, "runs", str(runs))
    assert code == 0 and "nll_bits_per_dim=" in out and "sub/vae" in out
    code, _, err = cli(capsys, "runs", str(runs / "nonexistent"))
    assert code == 2 and "no such directory" in err
