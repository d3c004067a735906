"""The command line: the main job end to end, and one clear line with exit 2 for every mistake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from clitools import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unigen import checkpoint as ck


def _one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [
    ["train", "nosuchmodel", "--data", "digits"],
    ["train", "vae", "--set", "z_dim=-3"],
    ["train", "vae", "--set", "nokey=1"],
    ["train", "vae", "--data", "nodata"],
    ["train", "vae", "--steps", "abc"],
    ["train", "vae", "--config", "/nonexistent.toml"],
    ["sample", "/nonexistent/run"],
    ["eval", "/nonexistent/run"],
    ["eval", "/nonexistent/run", "--metrics", "nosuchmetric"],
    ["nosuchcommand"],
])
def test_user_mistakes_are_one_line_and_exit_2(capsys, argv):
    code, _, err = run_cli(capsys, *argv)
    _one_line_error(code, err)


def test_missing_dataset_directory_says_how_to_get_the_data(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "vae", "--data", "fashion-mnist", "--data-dir", str(tmp_path / "none"))
    _one_line_error(code, err)
    assert "apt-get install dataset-fashion-mnist" in err


def test_truncated_idx_file_is_one_line(capsys, tmp_path):
    import gzip

    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        with gzip.open(tmp_path / f"{name}.gz", "wb") as fh:
            fh.write(bytes([0, 0, 8, 3]) + (100).to_bytes(4, "big") * 3 + b"\x00" * 50)
    code, _, err = run_cli(capsys, "train", "vae", "--data", "mnist", "--data-dir", str(tmp_path))
    _one_line_error(code, err)
    assert "truncated" in err


_ids = st.sampled_from(["vae", "fsq", "nosuch", "", "VAE", "../x", "vae;rm"]) | st.text(max_size=8)
_keys = st.sampled_from(["z_dim", "beta", "lr", "steps", "levels", "betas", "optimizer", "x"]) | st.text(max_size=6)
_values = st.sampled_from(["-1", "0", "nan", "inf", "1e99", "abc", "[1,2]", "", "true", "1,2,3"]) | st.text(max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=_ids, key=_keys, value=_values)
def test_random_train_arguments_never_give_a_traceback(model, key, value, capsys):
    out = Path(tempfile.mkdtemp())
    argv = ["train", model, "--data", "digits", "--steps", "0", "--out", str(out / "r"), "--quiet",
            "--set", f"{key}={value}"]
    code, _, err = run_cli(capsys, *argv)
    assert code in (0, 2), err
    if code == 2:
        _one_line_error(code, err)


def test_train_sample_eval_and_resume(capsys, tmp_path):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "vae", "--data", "digits", "--steps", "20", "--batch-size", "32",
                             "--out", str(run), "--quiet", "--set", "z_dim=4", "--checkpoint-every", "10")
    assert code == 0, err
    record = json.loads((run / "run.json").read_text())
    assert record["model_config"]["z_dim"] == 4 and record["trainer"]["steps"] == 20
    assert len((run / "metrics.jsonl").read_text().splitlines()) >= 1
    code, _, err = run_cli(capsys, "train", "vae", "--data", "digits", "--out", str(run), "--quiet")
    _one_line_error(code, err)  # an existing run is never overwritten
    code, _, err = run_cli(capsys, "train", "vae", "--data", "digits", "--steps", "30", "--out", str(run),
                           "--quiet", "--resume")
    assert code == 0, err
    assert ck.latest_checkpoint(run).name == "step_00000030"
    code, out, err = run_cli(capsys, "sample", str(run), "--n", "10", "--out", str(tmp_path / "s.npy"))
    assert code == 0, err
    import numpy as np

    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (10, 1, 8, 8) and np.isfinite(arr).all()
    code, out, err = run_cli(capsys, "sample", str(run), "--n", "16", "--out", str(tmp_path / "s.png"))
    assert code == 0 and (tmp_path / "s.png").stat().st_size > 0
    code, _, err = run_cli(capsys, "sample", str(run), "--out", str(tmp_path / "s.txt"))
    _one_line_error(code, err)
    code, out, err = run_cli(capsys, "eval", str(run), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["nll_kind"] == "bound" and result["nll_bits_per_dim"] > 0


def test_listings_as_json(capsys):
    for cmd in ("models", "datasets", "plugins"):
        code, out, _ = run_cli(capsys, cmd, "--json")
        assert code == 0 and json.loads(out)


def _cli(*argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "unigen", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


TRAIN = ["train", "vae", "--data", "digits", "--steps", "120", "--batch-size", "32", "--checkpoint-every", "10",
         "--quiet", "--set", "z_dim=4", "--set", "width=8"]


@pytest.mark.slow
def test_kill_9_then_resume_gives_bit_identical_weights(tmp_path):
    ref = _cli(*TRAIN, "--out", str(tmp_path / "ref"))
    victim = _cli(*TRAIN, "--out", str(tmp_path / "victim"))
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "victim" / "checkpoints" / "step_00000040").exists():
        time.sleep(0.05)
    time.sleep(0.13)  # kill at an arbitrary moment, possibly mid-checkpoint
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    killed_at = ck.latest_checkpoint(tmp_path / "victim").name
    assert killed_at != "step_00000120"
    resume = _cli(*TRAIN, "--out", str(tmp_path / "victim"), "--resume")
    assert resume.wait(timeout=300) == 0, resume.stderr.read()
    a = ck.load_weights(ck.latest_checkpoint(tmp_path / "ref") / "model.safetensors")
    b = ck.load_weights(ck.latest_checkpoint(tmp_path / "victim") / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_on_the_global_batch(tmp_path):
    # FSQ's loss is deterministic, so two ranks with batch 16 must match one process with batch 32.
    common = ["train", "fsq", "--data", "digits", "--steps", "6", "--quiet", "--set", "width=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "unigen", *common, "--batch-size", "32", "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "unigen", *common, "--batch-size", "16", "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a = ck.load_weights(ck.latest_checkpoint(tmp_path / "one") / "model.safetensors")
    b = ck.load_weights(ck.latest_checkpoint(tmp_path / "two") / "model.safetensors")
    import unigen

    params = {n for n, _ in unigen.build_model("fsq", unigen.load_dataset("digits").info, {"width": 8}).named_parameters()}
    for k in params:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
