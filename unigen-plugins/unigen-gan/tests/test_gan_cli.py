"""The family through the command line: train, sample with truncation, eval reports no NLL."""

from __future__ import annotations

import json

import numpy as np

from unigen.cli import main


def test_eval_reports_nll_as_not_available(tmp_path, capsys):
    run = tmp_path / "gan"
    assert main(["train", "gan", "--data", "moons", "--steps", "2", "--batch-size", "16", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "nll", "--json", "--n", "32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["nll_bits_per_dim"] is None and result["nll_kind"] == "none"
    assert "no tractable likelihood" in result["nll_reason"]


def test_stylegan_samples_with_truncation_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "sg"
    assert main(["train", "stylegan", "--data", "digits", "--steps", "2", "--batch-size", "8", "--out", str(run),
                 "--set", "width=8", "--set", "z_dim=8", "--set", "w_dim=8", "--quiet"]) == 0
    out = tmp_path / "x.npy"
    assert main(["sample", str(run), "--n", "5", "--set", "truncation=0.7", "--out", str(out)]) == 0
    assert np.load(out).shape == (5, 1, 8, 8)
    assert main(["sample", str(run), "--n", "2", "--set", "truncation=-1"]) != 0
    assert "truncation" in capsys.readouterr().err
