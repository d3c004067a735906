"""Reliability: no bad checkpoint is written or loaded, paths stay inside the run, failures are one line."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from clitools import run_cli

from unigen import checkpoint as ck
from unigen.cli import main

TINY = ["--data", "digits", "--batch-size", "32", "--quiet", "--set", "z_dim=2", "--set", "width=8"]




def one_line(code: int, err: str, expected: int = 2) -> str:
    assert code == expected, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def train(capsys, out: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "train", "vae", *TINY, "--out", str(out), *extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoints at 2 and 4 (copied by the tests that change it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "vae", *TINY, "--out", str(out), "--steps", "4", "--checkpoint-every", "2"]) == 0
    return out


def copy_run(trained: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(trained, tmp_path / "run", symlinks=True))


# -- 1. weights are checked before a checkpoint is written ------------------------------------------------
@pytest.mark.parametrize("flags", [["--lr", "inf", "--steps", "1"], ["--lr", "inf", "--steps", "6", "--checkpoint-every", "1"],
                                   ["--set", "weight_decay=inf", "--steps", "1"]])
def test_a_diverged_update_never_reaches_a_checkpoint_nor_exits_0(capsys, tmp_path, flags):
    code, _, err = train(capsys, tmp_path / "r", *flags)
    line = one_line(code, err, expected=1)
    assert "NaN/inf" in line
    for path in (tmp_path / "r" / "checkpoints").glob("step_*/*.safetensors"):
        assert all(torch.isfinite(t).all() for t in ck.load_weights(path).values()), path


def test_a_nan_checkpoint_is_refused_when_loaded(capsys, tmp_path, trained):
    run = copy_run(trained, tmp_path)
    latest = ck.latest_checkpoint(run)
    for name in ("model.safetensors", "ema.safetensors"):
        if (latest / name).exists():
            tensors = ck.load_weights(latest / name)
            key = next(k for k, t in tensors.items() if t.is_floating_point())
            tensors[key] = torch.full_like(tensors[key], float("nan"))
            ck.save_weights(tensors, latest / name)
    for argv in (["eval", str(run), "--n", "10"], ["sample", str(run), "--n", "2", "--out", str(tmp_path / "s.npy")]):
        line = one_line(*run_cli(capsys, *argv)[::2])
        assert "NaN/inf" in line and key in line
    assert not (tmp_path / "s.npy").exists()


# -- 2. checkpoint paths stay direct children of checkpoints/ ---------------------------------------------
def _evil(run: Path) -> Path:
    """A second, different run beside ``run`` whose weights must never be loaded through ``run``."""
    import shutil

    evil = run.parent / "evil"
    shutil.copytree(run / "checkpoints" / "step_00000004", evil)
    return evil


@pytest.mark.parametrize("how", ["dotdot", "symlinked-dir", "absolute"])
def test_latest_never_leads_outside_the_checkpoints_folder(capsys, tmp_path, trained, how):
    run = copy_run(trained, tmp_path)
    evil = _evil(run)
    latest = run / "checkpoints" / "latest"
    if how == "dotdot":
        latest.write_text("step_00000002/../../../evil")
    elif how == "absolute":
        latest.write_text(str(evil))
    else:
        (run / "checkpoints" / "step_00000009").symlink_to(evil)
        latest.write_text("step_00000009")
    for argv in (["eval", str(run), "--n", "10"], ["train", "vae", *TINY, "--out", str(run), "--steps", "6", "--resume"]):
        line = one_line(*run_cli(capsys, *argv)[::2])
        assert "latest" in line


def test_a_latest_linked_to_another_file_does_not_show_its_contents(capsys, tmp_path, trained):
    run = copy_run(trained, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("step_hunter2-password\n")
    latest = run / "checkpoints" / "latest"
    latest.unlink()
    latest.symlink_to(secret)
    line = one_line(*run_cli(capsys, "eval", str(run), "--n", "10")[::2])
    assert "hunter2" not in line


@pytest.mark.parametrize("content", [b"\xff\xfe\x00bad", None])
def test_latest_that_is_binary_or_a_directory_is_one_line(capsys, tmp_path, trained, content):
    run = copy_run(trained, tmp_path)
    latest = run / "checkpoints" / "latest"
    latest.unlink()
    if content is None:
        latest.mkdir()
    else:
        latest.write_bytes(content)
    one_line(*run_cli(capsys, "eval", str(run), "--n", "10")[::2])


# -- 10. a full disk: one line, nothing left behind, the next --resume works ------------------------------
def test_disk_full_is_one_line_leaves_no_temporary_entries_and_resume_works(capsys, tmp_path, monkeypatch, trained):
    run = copy_run(trained, tmp_path)
    real = ck.save_weights

    def full(tensors, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck, "save_weights", full)
    code, _, err = train(capsys, run, "--steps", "6", "--resume")
    line = one_line(code, err, expected=1)
    assert "No space left on device" in line and "step_00000004" in line
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(ck, "save_weights", real)
    code, _, err = train(capsys, run, "--steps", "6", "--resume")
    assert code == 0, err
    assert ck.latest_checkpoint(run).name == "step_00000006"


def test_stale_temporary_entries_are_cleaned_at_start(capsys, tmp_path, trained):
    run = copy_run(trained, tmp_path)
    dead = 999999999  # above any pid_max: no such process
    (run / "checkpoints" / f".tmp-step_00000006-{dead}").mkdir()
    (run / "checkpoints" / f".tmp-step_00000006-{dead}" / "model.safetensors").write_bytes(b"x")
    (run / "checkpoints" / f".latest.tmp-{dead}").write_text("step_00000006")
    (run / f".run.json.tmp-{dead}").write_text("{")
    (run / f".eval.json.tmp-{os.getppid()}").write_text("{")  # a live reader's write in progress stays
    code, _, err = train(capsys, run, "--steps", "6", "--resume")
    assert code == 0, err
    assert sorted(p.name for p in run.rglob(".*tmp*")) == [f".eval.json.tmp-{os.getppid()}"]


# -- 11. state.pt: one line for a crafted pickle, a tampered step is refused ------------------------------
def test_a_crafted_state_is_one_line_without_torch_advice(capsys, tmp_path, trained):
    import pickle

    run = copy_run(trained, tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"step": Evil()}, ck.latest_checkpoint(run) / "state.pt", pickle_module=pickle)
    line = one_line(*train(capsys, run, "--steps", "6", "--resume")[::2])
    assert "weights_only" not in line and "state.pt" in line
    assert not (tmp_path / "pwned").exists()


def test_a_tampered_step_count_is_refused(capsys, tmp_path, trained):
    run = copy_run(trained, tmp_path)
    path = ck.latest_checkpoint(run) / "state.pt"
    state = ck.load_state(path)
    state["step"] = 1000
    torch.save(state, path)
    line = one_line(*train(capsys, run, "--steps", "1200", "--resume")[::2])
    assert "1000" in line and "step_00000004" in line


# -- 5. one writer per run directory ------------------------------------------------------------------------
def test_a_second_trainer_on_a_live_run_is_refused_naming_the_holder(capsys, tmp_path, trained):
    from unigen.runlock import RunLock

    run = copy_run(trained, tmp_path)
    before = (run / "metrics.jsonl").read_text()
    with RunLock(run):
        line = one_line(*train(capsys, run, "--steps", "6", "--resume")[::2])
        assert f"pid {os.getpid()}" in line
        line = one_line(*train(capsys, tmp_path / "run", "--steps", "6")[::2])
    assert (run / "metrics.jsonl").read_text() == before and ck.latest_checkpoint(run).name == "step_00000004"
    assert not (run / ".lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_message(capsys, tmp_path, trained):
    run = copy_run(trained, tmp_path)
    (run / ".lock").write_text("999999999@otherhost\n")
    code, _, err = train(capsys, run, "--steps", "6", "--resume")
    assert code == 0, err
    assert "taking over" in err and "999999999" in err
    assert not (run / ".lock").exists()


# -- 8. a failed start writes nothing -------------------------------------------------------------------------
def test_a_failed_start_leaves_nothing_and_the_corrected_command_runs(capsys, tmp_path):
    out = tmp_path / "r"
    one_line(*run_cli(capsys, "train", "vae", "--data", "digits", "--quiet", "--batch-size", "100000",
                      "--steps", "1", "--out", str(out))[::2])
    assert not out.exists()
    code, _, err = train(capsys, out, "--steps", "1")
    assert code == 0, err


# -- 9. --resume never logs a step twice --------------------------------------------------------------------
def test_resume_drops_the_metrics_logged_after_its_checkpoint(capsys, tmp_path):
    run = tmp_path / "r"
    code, _, err = train(capsys, run, "--steps", "4", "--checkpoint-every", "2", "--set", "log_every=1")
    assert code == 0, err
    (run / "checkpoints" / "latest").write_text("step_00000002")  # as if killed before step 4's checkpoint
    code, _, err = train(capsys, run, "--steps", "4", "--resume")
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


# -- 6. user mistakes: one line, exit 2, before any work, nothing written -----------------------------------
BIG = "100000000000000000000"
MISTAKES = {
    "sample-batch-0": ["sample", "{run}", "--n", "4", "--batch-size", "0"],
    "sample-batch-neg": ["sample", "{run}", "--n", "4", "--batch-size", "-1"],
    "sample-steps-0": ["sample", "{run}", "--n", "4", "--steps", "0"],
    "sample-missing-folder": ["sample", "{run}", "--n", "4", "--out", "{tmp}/missing/s.png"],
    "sample-onto-directory": ["sample", "{run}", "--n", "4", "--out", "{tmp}/adir.png"],
    "sample-bad-suffix": ["sample", "{run}", "--n", "4", "--out", "{tmp}/s.txt"],
    "sample-seed-huge": ["sample", "{run}", "--n", "4", "--seed", BIG, "--out", "{tmp}/s.npy"],
    "sample-cuda": ["sample", "{run}", "--n", "4", "--device", "cuda", "--out", "{tmp}/s.npy"],
    "eval-seed-huge": ["eval", "{run}", "--n", "4", "--seed", "-" + BIG],
    "eval-cuda": ["eval", "{run}", "--n", "4", "--device", "cuda"],
    "eval-n-0": ["eval", "{run}", "--n", "0"],
    "train-out-file": ["train", "vae", "--steps", "1", "--out", "{tmp}/afile"],
    "train-out-devnull": ["train", "vae", "--steps", "1", "--out", "/dev/null"],
    "train-out-under-file": ["train", "vae", "--steps", "1", "--out", "{tmp}/afile/sub"],
    "train-out-uncreatable": ["train", "vae", "--steps", "1", "--out", "/proc/no/such/run"],
    "train-seed-huge": ["train", "vae", "--steps", "1", "--out", "{tmp}/r", "--seed", BIG],
    "train-cuda": ["train", "vae", "--steps", "1", "--out", "{tmp}/r", "--device", "cuda"],
    "train-cuda-index": ["train", "vae", "--steps", "1", "--out", "{tmp}/r", "--device", "cuda:99"],
    "train-device-unknown": ["train", "vae", "--steps", "1", "--out", "{tmp}/r", "--device", "tpu"],
    "sample-device-unknown": ["sample", "{run}", "--n", "4", "--device", "tpu", "--out", "{tmp}/s.npy"],
    "eval-mps": ["eval", "{run}", "--n", "4", "--device", "mps"] if not torch.backends.mps.is_available() else ["eval", "{run}", "--n", "0"],
    "train-huge-model": ["train", "vae", "--steps", "1", "--out", "{tmp}/r", "--set", "z_dim=1000000000"],
    "train-config-binary": ["train", "vae", "--steps", "1", "--out", "{tmp}/r", "--config", "{tmp}/bad.toml"],
    "train-config-directory": ["train", "vae", "--steps", "1", "--out", "{tmp}/r", "--config", "{tmp}/adir.png"],
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_user_mistakes_are_one_line_exit_2_and_write_nothing(capsys, tmp_path, trained, name):
    if "cuda" in name and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.png").mkdir()
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe[model]\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(run=trained, tmp=tmp_path) for a in MISTAKES[name]]
    one_line(*run_cli(capsys, *argv)[::2])
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# -- run.json is validated when read: one line per problem --------------------------------------------------
@pytest.mark.parametrize("change, problem", [
    ({"model": 3}, "'model'"),
    ({"data": {"shape": "1,8,8"}}, "'data.shape'"),
    ({"data": {"levels": 0}}, "'data.levels'"),
    ({"data": {"levels": 1}}, "'data.levels'"),
    ({"data": {"levels": "17"}}, "'data.levels'"),
    ({"model_config": None}, "'model_config'"),
    ({"dataset": None}, "'dataset'"),
])
def test_a_malformed_run_json_is_one_line_per_problem(capsys, tmp_path, trained, change, problem):
    run = copy_run(trained, tmp_path)
    record = json.loads((run / "run.json").read_text())
    for key, value in change.items():
        if isinstance(value, dict):
            record[key].update(value)
        else:
            record[key] = value
    (run / "run.json").write_text(json.dumps(record))
    for argv in (["sample", str(run), "--n", "2", "--out", str(tmp_path / "s.npy")], ["eval", str(run), "--n", "4"],
                 ["train", "vae", *TINY, "--out", str(run), "--steps", "6", "--resume"]):
        line = one_line(*run_cli(capsys, *argv)[::2])
        assert problem in line and "run.json" in line


def test_every_problem_of_run_json_is_its_own_line(capsys, tmp_path, trained):
    run = copy_run(trained, tmp_path)
    record = json.loads((run / "run.json").read_text())
    del record["model"]
    record["data"]["shape"] = [1, -8, 8]
    (run / "run.json").write_text(json.dumps(record))
    code, _, err = run_cli(capsys, "eval", str(run), "--n", "4")
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "'model'" in lines[0] and "'data.shape'" in lines[1], err


@pytest.mark.parametrize("content", [b"\xff\xfe{}", None])
def test_run_json_that_is_binary_or_a_directory_is_one_line(capsys, tmp_path, trained, content):
    run = copy_run(trained, tmp_path)
    (run / "run.json").unlink()
    if content is None:
        (run / "run.json").mkdir()
    else:
        (run / "run.json").write_bytes(content)
    one_line(*run_cli(capsys, "eval", str(run), "--n", "4")[::2])


# -- 7. --resume with settings: what may change is applied and recorded, the rest refused by name ------------
@pytest.mark.parametrize("extra, named", [
    (["--set", "nokey=1"], "nokey"),
    (["--config", "/nonexistent/settings.toml"], "settings.toml"),
    (["--lr", "0.5"], "lr"),
    (["--set", "z_dim=3"], "z_dim"),
    (["--batch-size", "16", "--set", "optimizer=sgd"], "batch_size, optimizer"),
])
def test_resume_refuses_settings_it_cannot_change_naming_them(capsys, tmp_path, trained, extra, named):
    run = copy_run(trained, tmp_path)
    before = (run / "run.json").read_text()
    line = one_line(*train(capsys, run, "--steps", "6", "--resume", *extra)[::2])
    assert named in line
    assert (run / "run.json").read_text() == before and ck.latest_checkpoint(run).name == "step_00000004"


def test_resume_applies_and_records_the_settings_it_may_change(capsys, tmp_path, trained):
    run = copy_run(trained, tmp_path)
    settings = tmp_path / "more.toml"
    settings.write_text("[trainer]\nlog_every = 1\n")
    code, _, err = train(capsys, run, "--steps", "7", "--resume", "--checkpoint-every", "3", "--config", str(settings),
                         "--keep-checkpoints", "5")
    assert code == 0, err
    trainer = json.loads((run / "run.json").read_text())["trainer"]
    assert (trainer["steps"], trainer["checkpoint_every"], trainer["log_every"], trainer["keep_checkpoints"]) == (7, 3, 1, 5)
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_00000002", "step_00000004", "step_00000006", "step_00000007"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 5, 6, 7]


# -- 9. crash safety by default: checkpoints by time, and a signal saves one -----------------------------------
def test_checkpoints_are_written_by_time_as_well(capsys, tmp_path):
    run = tmp_path / "r"
    code, _, err = train(capsys, run, "--steps", "6", "--set", "checkpoint_minutes=1e-9", "--keep-checkpoints", "10")
    assert code == 0, err
    assert len(list((run / "checkpoints").glob("step_*"))) == 6
    from unigen.trainer import TrainerConfig

    assert TrainerConfig().checkpoint_minutes > 0  # on by default


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGINT"])
def test_a_signal_in_training_saves_a_checkpoint_of_that_step(tmp_path, sig):
    import signal

    import unigen
    from unigen.errors import Interrupted
    from unigen.trainer import Callback

    class SendAt3(Callback):
        def on_step_end(self, trainer, step):
            if step == 3:
                os.kill(os.getpid(), getattr(signal, sig))

    previous = signal.getsignal(getattr(signal, sig))
    with pytest.raises(Interrupted, match=f"stopped by {sig} at step 3; checkpoint .*step_00000003") as info:
        unigen.train("vae", out=tmp_path / "r", steps=1000, batch_size=32, z_dim=2, width=8, quiet=True,
                     callbacks=[SendAt3()])
    assert info.value.exit_code == 128 + getattr(signal, sig)
    assert signal.getsignal(getattr(signal, sig)) is previous
    assert ck.latest_checkpoint(tmp_path / "r").name == "step_00000003"


def test_sigterm_saves_a_checkpoint_and_stops_with_one_line(tmp_path):
    sig = "SIGTERM"
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "r"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "unigen", "train", "vae", *TINY, "--steps", "100000", "--out", str(run),
                             "--set", "log_every=1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 200):
        time.sleep(0.05)
    # a second trainer on the live run is refused, naming the first (its metrics are not touched)
    second = subprocess.run([sys.executable, "-m", "unigen", "train", "vae", *TINY, "--steps", "100000", "--out", str(run),
                             "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and f"pid {proc.pid}" in one_line(2, second.stderr), second.stderr
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and sig in lines[0] and "--resume" in lines[0], err
    latest = ck.latest_checkpoint(run)
    assert latest is not None and ck.checkpoint_step(latest) > 0
    assert not (run / ".lock").exists()


def test_a_file_system_without_locks_is_said_and_training_goes_on(capsys, tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    code, _, err = train(capsys, tmp_path / "r", "--steps", "1")
    assert code == 0, err
    assert "cannot lock" in err and ck.latest_checkpoint(tmp_path / "r").name == "step_00000001"


def test_a_run_that_diverged_before_its_first_checkpoint_resumes_with_new_settings(capsys, tmp_path):
    run = tmp_path / "r"
    one_line(*train(capsys, run, "--steps", "2", "--lr", "inf")[::2], expected=1)
    assert ck.latest_checkpoint(run) is None
    code, _, err = train(capsys, run, "--steps", "2", "--lr", "0.001", "--resume")
    assert code == 0, err
    assert json.loads((run / "run.json").read_text())["trainer"]["lr"] == 0.001
