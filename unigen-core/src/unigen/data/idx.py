"""IDX files (MNIST, Fashion-MNIST): ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

Fashion-MNIST installs from Debian's ``dataset-fashion-mnist`` into /usr/share/datasets/fashion-mnist.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..model import DataInfo
from .base import Dataset

DEFAULT_DIRS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
}
HOW_TO_GET = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist",
    "mnist": "download the four MNIST IDX files",
}
FASHION_CAPTIONS = tuple(
    f"a photo of a {w}"
    for w in ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
              "ankle boot")
)
MNIST_CAPTIONS = tuple(
    f"a handwritten digit {w}"
    for w in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (magic 0x00 0x00 dtype ndim, big-endian sizes, raw data)."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header is incomplete")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: {len(raw) - header} data bytes, expected {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    raise DataError(f"missing {stem}[.gz] in {root}")


@functools.lru_cache(maxsize=8)
def load_idx(name: str, split: str, data_dir: str | None) -> Dataset:
    root = Path(data_dir or os.environ.get("UNIGEN_DATA_DIR") or DEFAULT_DIRS[name])
    if not root.is_dir():
        raise DataError(
            f"{name} data not found in {root}: {HOW_TO_GET[name]}, or pass --data-dir DIR"
        )
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{root}: images {images.shape} and labels {labels.shape} do not match")
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28) uint8
    h, w = images.shape[1:]
    info = DataInfo(name=name, shape=(1, h, w), kind="image", levels=256, num_classes=10)
    captions = FASHION_CAPTIONS if name == "fashion-mnist" else MNIST_CAPTIONS
    return Dataset(info=info, x=x.contiguous(), y=torch.from_numpy(labels.copy()).long(), captions=captions)


def loader(name: str):
    def load(split: str = "train", data_dir: str | None = None) -> Dataset:
        return load_idx(name, split, data_dir)

    return load
