"""A user's own data: folders of images, .npy/.npz/.csv arrays, tensors and torch Datasets; uint8
storage, streaming, flips and the exact order that resume relies on; one line for every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clitools import run_cli
from PIL import Image

import unigen
from unigen.data import BatchIterator, from_tensor, from_torch_dataset
from unigen.data.sources import Source, split_index
from unigen.errors import DataError


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    return lines[0]


def write_pngs(folder, n: int, size: int = 8, mode: str = "RGB", seed: int = 0, suffix: str = ".png") -> np.ndarray:
    """n random images; returns them as (n, C, H, W) uint8 in file-name order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    c = 3 if mode == "RGB" else 1
    arr = rng.integers(0, 256, (n, size, size, c), dtype=np.uint8)
    for i, a in enumerate(arr):
        Image.fromarray(a if c == 3 else a[..., 0], mode).save(folder / f"{i:04d}{suffix}")
    return arr.transpose(0, 3, 1, 2)


# -- folders --------------------------------------------------------------------------------------
def test_folder_is_uint8_with_the_files_pixels_and_a_seeded_split(tmp_path):
    pixels = write_pngs(tmp_path / "pngs", 30)
    train = unigen.load_dataset(str(tmp_path / "pngs"))
    test = unigen.load_dataset(f"folder:{tmp_path / 'pngs'}", "test")
    assert train.raw.dtype == torch.uint8 and train.info.shape == (3, 8, 8) and train.info.levels == 256
    assert len(train) == 27 and len(test) == 3 and train.y is None
    idx = split_index(30, "train", where="t")
    assert torch.equal(train.raw, torch.from_numpy(pixels)[idx])
    assert torch.equal(train.x, train.raw.float() / 255 * 2 - 1)  # the float view, in [-1, 1]
    assert set(idx.tolist()).isdisjoint(split_index(30, "test", where="t").tolist())


def test_class_subfolders_are_labels_and_train_test_folders_are_the_split(tmp_path):
    write_pngs(tmp_path / "a" / "train" / "cat", 4, seed=1)
    write_pngs(tmp_path / "a" / "train" / "dog", 6, seed=2, mode="L")  # any colour image makes it RGB
    write_pngs(tmp_path / "a" / "test" / "cat", 2, seed=3)
    write_pngs(tmp_path / "a" / "test" / "dog", 1, seed=4)
    train, test = unigen.load_dataset(str(tmp_path / "a")), unigen.load_dataset(str(tmp_path / "a"), "test")
    assert len(train) == 10 and len(test) == 3 and train.info.num_classes == 2 and train.info.shape[0] == 3
    assert train.y.tolist() == [0] * 4 + [1] * 6 and test.y.tolist() == [0, 0, 1]


def test_image_size_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    (tmp_path / "f").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "f" / "wide.png")
    Image.new("L", (16, 32), 128).save(tmp_path / "f" / "tall.jpg")
    data = unigen.load_dataset(str(tmp_path / "f"), image_size=8, channels=1)
    both = torch.cat([data.raw, unigen.load_dataset(str(tmp_path / "f"), "test", image_size=8, channels=1).raw])
    assert data.info.shape == (1, 8, 8) and both.shape == (2, 1, 8, 8)
    # red -> luminance 299 * 255 / 1000 = 76; grey 128 stays (JPEG may move it by a level or two)
    assert sorted(int(v) for v in both.float().mean((1, 2, 3)).round()) in ([76, 128], [76, 127], [76, 129])


def test_streamed_folder_gives_the_same_batches_as_in_memory(tmp_path):
    write_pngs(tmp_path / "p", 40)
    mem = unigen.load_dataset(str(tmp_path / "p"), stream=False)
    lazy = unigen.load_dataset(str(tmp_path / "p"), stream=True)
    assert lazy.stream and not isinstance(lazy.raw, torch.Tensor)
    a, b = BatchIterator(mem, 8, seed=3, flip=True), BatchIterator(lazy, 8, seed=3, flip=True)
    for _ in range(10):  # past an epoch boundary (36 // 8 = 4 batches per epoch)
        assert torch.equal(next(a).x, next(b).x)


def test_order_and_flips_resume_exactly_and_ranks_split_the_global_batch(tmp_path):
    write_pngs(tmp_path / "p", 40)
    data = unigen.load_dataset(str(tmp_path / "p"), stream=True)
    ref = BatchIterator(data, 8, seed=5, flip=True)
    batches = [next(ref).x for _ in range(7)]
    again = BatchIterator(data, 8, seed=5, flip=True)
    for _ in range(3):
        next(again)
    resumed = BatchIterator(data, 8, seed=5, flip=True)
    resumed.load_state_dict(again.state_dict())
    assert all(torch.equal(next(resumed).x, batches[i]) for i in range(3, 7))
    one = BatchIterator(data, 8, seed=5, flip=True)
    ranks = [BatchIterator(data, 4, seed=5, flip=True, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        assert torch.equal(next(one).x, torch.cat([next(r).x for r in ranks]))
    flipped = BatchIterator(data, 8, seed=5, flip=False)
    plain = [next(flipped).x for _ in range(7)]
    n_flipped = sum(int((~(p == b).flatten(1).all(1)).sum()) for p, b in zip(plain, batches))
    assert 0 < n_flipped < 7 * 8  # some flipped, not all
    assert all(torch.equal(torch.where((p == b).flatten(1).all(1)[:, None, None, None], p, p.flip(-1)), b)
               for p, b in zip(plain, batches))


def test_builtin_digits_are_uint8_levels_with_the_same_floats():
    digits = unigen.load_dataset("digits")
    assert digits.raw.dtype == torch.uint8 and int(digits.raw.max()) == 16
    assert torch.equal(next(BatchIterator(digits, 16, seed=0)).x, digits.x[torch.randperm(
        len(digits), generator=torch.Generator().manual_seed(0))[:16]])


def test_digits_read_from_the_bundled_file_are_scikit_learns_load_digits():
    from sklearn.datasets import load_digits

    from unigen.data import digits

    images, target = digits._bundled()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)


# -- arrays, tensors, torch Datasets -------------------------------------------------------------
def test_npy_vectors_are_memory_mapped_and_npz_keeps_its_own_split(tmp_path):
    pts = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    np.save(tmp_path / "p.npy", pts)
    data = unigen.load_dataset(str(tmp_path / "p.npy"))
    assert data.info.kind == "vector" and data.stream and len(data) == 45
    assert torch.equal(data.x, torch.from_numpy(pts)[split_index(50, "train", where="t")])
    imgs = np.random.default_rng(1).random((6, 4, 4, 3))  # floats in [0, 1], channels last
    np.savez(tmp_path / "d.npz", x_train=imgs[:4], y_train=[0, 1, 0, 1], x_test=imgs[4:], y_test=[1, 1])
    train = unigen.load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert train.info.shape == (3, 4, 4) and train.raw.dtype == torch.uint8 and train.y.tolist() == [0, 1, 0, 1]
    assert torch.equal(train.raw, torch.from_numpy(np.rint(imgs[:4] * 255).astype(np.uint8)).permute(0, 3, 1, 2))


def test_csv_with_a_header_row(tmp_path):
    (tmp_path / "v.csv").write_text("a,b\n1,2\n3,4.5\n\n-1,0\n")
    data = Source.parse(str(tmp_path / "v.csv")).load("train")
    assert data.info.shape == (2,) and len(data) == 2


def test_from_tensor_and_from_torch_dataset():
    x = torch.rand(10, 1, 5, 5) * 2 - 1  # floats in [-1, 1]
    d = from_tensor(x, torch.arange(10) % 2)
    assert d.raw.dtype == torch.uint8 and d.info.num_classes == 2 and (d.x - x).abs().max() <= 1 / 255 + 1e-6
    pairs = [(Image.new("RGB", (6, 6), (i, 0, 0)), i % 3) for i in range(9)]
    t = from_torch_dataset(pairs)
    assert t.info.shape == (3, 6, 6) and t.y.tolist() == [i % 3 for i in range(9)]
    assert t.raw[:, 0, 0, 0].tolist() == list(range(9))


# -- bad input: one line naming the file, exit 2, nothing written ----------------------------------
def _bad_inputs(tmp_path):
    write_pngs(tmp_path / "trunc", 4)
    held_out = tmp_path / "trunc" / f"{int(split_index(4, 'test', where='t')[0]):04d}.png"  # in the test split
    held_out.write_bytes(held_out.read_bytes()[:60])
    write_pngs(tmp_path / "mixed", 3)
    write_pngs(tmp_path / "mixed", 1, size=6, suffix=".webp")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "bad.csv").write_text("1,2\n3,x7\n")
    nan = np.zeros((20, 2), np.float32)
    nan[13, 1] = np.inf
    np.save(tmp_path / "nan.npy", nan)
    return {
        "trunc": (f"{int(split_index(4, 'test', where='t')[0]):04d}.png", "cannot read image"),
        "mixed": ("0000.png", "differ in size"),
        "empty": ("empty", "no images"),
        "bad.csv": ("bad.csv:2", "non-numeric cell 'x7'"),
        "nan.npy": ("nan.npy", "example 13"),
        "missing": ("missing", "no such file"),
        "folder:missing": ("missing", "no such folder"),
    }


@pytest.mark.parametrize("name", ["trunc", "mixed", "empty", "bad.csv", "nan.npy", "missing", "folder:missing"])
def test_bad_input_is_one_line_naming_the_file_and_writes_nothing(capsys, tmp_path, name):
    expected = _bad_inputs(tmp_path)[name]
    data = f"folder:{tmp_path / 'missing'}" if name == "folder:missing" else str(tmp_path / name)
    out = tmp_path / "out" / "run"
    code, _, err = run_cli(capsys, "train", "vae", "--data", data, "--steps", "1", "--out", str(out), "--quiet")
    line = _one_line_error(code, err)
    assert expected[0] in line and expected[1] in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["--data", "digits", "--data-dir", "/tmp"],  # digits reads no files: an error, not ignored
    ["--data", "moons", "--data-dir", "/tmp"],
    ["--data", "shapes", "--data-dir", "/tmp"],
    ["--data", "digits", "--image-size", "16"],  # resizing applies to a user's files
    ["--data", "nodata/"],
])
def test_data_flags_that_do_not_apply_are_refused(capsys, tmp_path, argv):
    code, _, err = run_cli(capsys, "train", "vae", *argv, "--steps", "1", "--out", str(tmp_path / "r"), "--quiet")
    _one_line_error(code, err)
    assert not (tmp_path / "r").exists()


def test_image_size_on_vectors_is_refused(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((10, 2), np.float32))
    with pytest.raises(DataError, match="image-size"):
        unigen.load_dataset(str(tmp_path / "p.npy"), image_size=8)


def test_the_recorded_source_string_reads_back_the_same_source(tmp_path):
    write_pngs(tmp_path / "p", 12, size=12)
    given = Source.parse(str(tmp_path / "p"), image_size=8, channels=1, stream=True)
    assert given.id == f"folder:{tmp_path / 'p'}?size=8&channels=1"  # streaming is not part of the data's id
    back = Source.parse(given.id)
    assert (back.kind, back.location, back.image_size, back.channels) == ("folder", str(tmp_path / "p"), 8, 1)
    assert torch.equal(back.load("test").raw, torch.as_tensor(given.load("test").raw[:]))  # decoded / streamed
