"""What training holds of the data: the uint8 pixels once, and floats only a batch at a time.

Measured without RSS (which other processes and the allocator blur): every conversion of stored
values to floats goes through :func:`unigen.data.base.as_floats`, so counting the rows each call
converts shows whether a float copy of the whole data set is ever made during ``unigen train`` or
the evaluator's accuracy check.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import unigen.data.base as base
from unigen.cli import main


def _pngs(folder, n: int, size: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def _count_conversions(monkeypatch) -> tuple[list[int], list[str]]:
    rows: list[int] = []
    whole: list[str] = []
    convert = base.as_floats

    def counting(raw, levels):
        rows.append(int(raw.shape[0]))
        return convert(raw, levels)

    def float_view(self):
        whole.append(self.info.name)
        return base.Dataset.floats(self, slice(None))

    monkeypatch.setattr(base, "as_floats", counting)
    monkeypatch.setattr(base.Dataset, "x", property(float_view))
    return rows, whole


def test_training_on_a_folder_converts_one_batch_at_a_time_never_the_whole_set(capsys, monkeypatch, tmp_path):
    _pngs(tmp_path / "pngs", 80)  # 72 train examples, batch 8
    rows, whole = _count_conversions(monkeypatch)
    code = main(["train", "vae", "--data", str(tmp_path / "pngs"), "--steps", "4", "--batch-size", "8",
                 "--sample-every", "2", "--out", str(tmp_path / "run"), "--quiet", "--no-stream"])
    assert code == 0, capsys.readouterr().err
    assert whole == []  # nobody asked for the float view of a whole split
    assert rows and max(rows) <= 8, rows  # the trainer's batches were converted, nothing larger


def test_the_evaluator_accuracy_reads_the_test_split_a_batch_at_a_time(monkeypatch):
    from unigen.metrics.evaluator import test_accuracy

    rows, whole = _count_conversions(monkeypatch)
    data = base.Dataset(info=_info(), x=torch.zeros(50, 3, 4, 4, dtype=torch.uint8), y=torch.zeros(50, dtype=torch.long))
    net = lambda x: (None, torch.stack([torch.ones(len(x)), torch.zeros(len(x))], 1))  # noqa: E731  always class 0
    assert test_accuracy(net, data, batch_size=16) == 1.0
    assert whole == [] and max(rows) <= 16, (whole, rows)


def test_the_counter_sees_a_whole_set_float_copy(monkeypatch):
    # The check above can fail: a whole-split float view is seen by both counters.
    rows, whole = _count_conversions(monkeypatch)
    data = base.Dataset(info=_info(), x=torch.zeros(50, 3, 4, 4, dtype=torch.uint8))
    assert data.x.shape == (50, 3, 4, 4) and whole == [data.info.name] and rows == [50]


def _info():
    from unigen.model import DataInfo

    return DataInfo(name="zeros", shape=(3, 4, 4), kind="image", levels=256)
