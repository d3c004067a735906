"""A user's own data end to end on the command line: a folder of PNGs through training and sampling,
a .npy of points learnt by a flow, a Hugging Face dataset saved to disk, and kill -9 + resume with a
streamed folder source giving bit-identical weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from clitools import run_cli
from PIL import Image

from unigen import checkpoint as ck
from unigen.metrics.mmd import mmd2


def coloured_squares(folder, n: int, size: int = 32, seed: int = 0) -> None:
    """n RGB PNGs: a square of one of three colours on black, at a random place."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = np.array([[230, 40, 40], [40, 200, 60], [50, 80, 230]], dtype=np.uint8)
    for i in range(n):
        a = np.zeros((size, size, 3), np.uint8)
        s = int(rng.integers(size // 4, size // 2))
        r, c = rng.integers(0, size - s, 2)
        a[r : r + s, c : c + s] = colours[rng.integers(3)]
        Image.fromarray(a).save(folder / f"{i:04d}.png")


def test_ddpm_trains_on_a_folder_of_pngs_and_samples_a_colour_grid(capsys, tmp_path):
    # The command with --steps 300; 20 small steps here keep CI cheap (the path is the same).
    coloured_squares(tmp_path / "pngs", 48)
    run = tmp_path / "runs" / "mine"
    code, _, err = run_cli(capsys, "train", "ddpm", "--data", str(tmp_path / "pngs"), "--steps", "20",
                           "--batch-size", "16", "--set", "width=8", "--set", "timesteps=50", "--out", str(run),
                           "--quiet")
    assert code == 0, err
    record = json.loads((run / "run.json").read_text())
    assert record["dataset"] == f"folder:{tmp_path / 'pngs'}" and record["data"]["shape"] == [3, 32, 32]
    code, _, err = run_cli(capsys, "sample", str(run), "--n", "16", "--steps", "5", "--out", str(tmp_path / "s.png"))
    assert code == 0, err
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "RGB" and min(im.size) >= 4 * 32
        grid = np.asarray(im).astype(int)
    assert np.abs(grid[..., 0] - grid[..., 1]).max() > 0  # the channels differ: a colour grid, not grey


def test_realnvp_learns_points_from_a_npy_file(capsys, tmp_path):
    def points(n: int, seed: int) -> np.ndarray:  # two blobs at (-1.5, 0) and (1.5, 0.5)
        rng = np.random.default_rng(seed)
        centres = np.array([[-1.5, 0.0], [1.5, 0.5]])[rng.integers(0, 2, n)]
        return (centres + 0.25 * rng.standard_normal((n, 2))).astype(np.float32)

    np.save(tmp_path / "points.npy", points(4000, 0))
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "realnvp", "--data", str(tmp_path / "points.npy"), "--steps", "200",
                           "--batch-size", "256", "--out", str(run), "--quiet")
    assert code == 0, err
    code, _, err = run_cli(capsys, "sample", str(run), "--n", "1000", "--out", str(tmp_path / "s.npy"))
    assert code == 0, err
    fresh = torch.from_numpy(points(1000, 1))
    learnt = float(mmd2(torch.from_numpy(np.load(tmp_path / "s.npy")), fresh))
    normal = float(mmd2(torch.randn(1000, 2, generator=torch.Generator().manual_seed(2)), fresh))
    assert learnt < 0.05 * normal, (learnt, normal)


def test_a_hugging_face_dataset_saved_to_disk_trains_through_hf_path(capsys, tmp_path):
    datasets = pytest.importorskip("datasets", reason="the Hugging Face extra: pip install 'unigen-core[hf]'")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(40)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    ds = datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(40)]}, features=features)
    ds.save_to_disk(str(tmp_path / "hfset"))
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "vae", "--data", f"hf:{tmp_path / 'hfset'}", "--steps", "3",
                           "--batch-size", "8", "--out", str(run), "--quiet")
    assert code == 0, err
    record = json.loads((run / "run.json").read_text())
    assert record["dataset"] == f"hf:{tmp_path / 'hfset'}"
    assert record["data"]["shape"] == [3, 8, 8] and record["data"]["num_classes"] == 3


def _cli(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "unigen", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_9_then_resume_with_a_streamed_folder_gives_bit_identical_weights(tmp_path):
    coloured_squares(tmp_path / "pngs", 100, size=8)
    train = ["train", "vae", "--data", str(tmp_path / "pngs"), "--stream", "--flip", "--steps", "120",
             "--batch-size", "16", "--checkpoint-every", "10", "--quiet", "--set", "z_dim=4", "--set", "width=8"]
    ref = _cli(*train, "--out", str(tmp_path / "ref"))
    victim = _cli(*train, "--out", str(tmp_path / "victim"))
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "victim" / "checkpoints" / "step_00000040").exists():
        time.sleep(0.05)
    time.sleep(0.13)  # kill at an arbitrary moment, possibly mid-checkpoint
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    assert ck.latest_checkpoint(tmp_path / "victim").name != "step_00000120"
    resume = _cli(*train, "--out", str(tmp_path / "victim"), "--resume")
    assert resume.wait(timeout=300) == 0, resume.stderr.read()
    a = ck.load_weights(ck.latest_checkpoint(tmp_path / "ref") / "model.safetensors")
    b = ck.load_weights(ck.latest_checkpoint(tmp_path / "victim") / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
