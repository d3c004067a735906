"""Arrays to datasets: ``.npy``, ``.npz`` and ``.csv`` files, and in Python any tensor or
``torch.utils.data.Dataset``.

The rule for an array ``a`` (one place, used by every array source):

- ``(N, D)``: vectors, stored as float32 (``kind="vector"``).
- ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with C in {1, 3}: images, stored as uint8
  levels {0..255} (``levels=256``). uint8 values are used as they are; floats in [0, 1] or [-1, 1]
  are quantized to 256 levels, as saving them to PNG would (v = round(255 u), u in [0, 1]).
- NaN/inf, or image values outside those ranges, are an error naming the file and the example.

A ``.npy`` of uint8 images or float32 vectors is memory-mapped (``np.load(mmap_mode="c")``), never
read whole: its batches are read from the page cache (``Dataset.stream``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..model import DataInfo
from .base import Dataset

IMAGE_CHANNELS = (1, 3)


def _labels(y: Any, n: int, where: str) -> Tensor | None:
    if y is None:
        return None
    y = torch.as_tensor(np.asarray(y))
    if y.dtype.is_floating_point and not torch.equal(y, y.round()):
        raise DataError(f"{where}: labels must be whole numbers, got {y.dtype} values such as {float(y.flatten()[0])}")
    y = y.long().flatten()
    if len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} examples")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{where}: labels must be >= 0, got {int(y.min())}")
    return y


def _first_bad(a: np.ndarray) -> int | None:
    """Index of the first example with NaN/inf, read in chunks (a memory-mapped file is not loaded)."""
    for start in range(0, len(a), 65536):
        bad = ~np.isfinite(a[start : start + 65536].reshape(min(65536, len(a) - start), -1)).all(1)
        if bad.any():
            return start + int(bad.argmax())
    return None


def _as_images(a: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) / (N, C, H, W) / (N, H, W, C) -> (N, C, H, W), a view where it can be."""
    if a.ndim == 3:
        return a[:, None]
    if a.shape[1] in IMAGE_CHANNELS:
        return a
    if a.shape[3] in IMAGE_CHANNELS:
        return a.transpose(0, 3, 1, 2)
    raise DataError(f"{where}: images of shape {tuple(a.shape[1:])} have neither 1 nor 3 channels "
                    "(expected (N, C, H, W) or (N, H, W, C) with C in 1, 3)")


def _quantize(a: np.ndarray, where: str) -> np.ndarray:
    """Image values -> uint8 levels {0..255}: uint8 as they are, whole numbers in 0..255, floats in
    [0, 1] (v = round(255 u)) or [-1, 1] (u = (x + 1) / 2)."""
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise DataError(f"{where}: images must be numbers, got dtype {a.dtype}")
    bad = _first_bad(a) if np.issubdtype(a.dtype, np.floating) else None
    if bad is not None:
        raise DataError(f"{where}: NaN/inf values (first at example {bad})")
    lo, hi = float(a.min()), float(a.max())
    if np.issubdtype(a.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer images must lie in 0..255, got values in [{lo:g}, {hi:g}]")
        return a.astype(np.uint8)
    if lo >= 0 and hi <= 1:
        u = a
    elif lo >= -1 and hi <= 1:
        u = (a + 1) / 2
    else:
        raise DataError(f"{where}: float images must lie in [0, 1] or [-1, 1], got values in [{lo:g}, {hi:g}]")
    return np.rint(np.asarray(u, dtype=np.float64) * 255).astype(np.uint8)


def from_array(a: Any, y: Any = None, *, name: str, where: str | None = None, channels: int | None = None) -> Dataset:
    """A :class:`Dataset` from an array or tensor by the rule in this module's docstring.
    ``where`` names the source in errors (a file); ``channels`` converts images to 1 or 3 channels."""
    where = where or name
    memmapped = isinstance(a, np.memmap)
    a = a.detach().cpu().numpy() if isinstance(a, Tensor) else a if memmapped else np.asarray(a)
    if a.ndim < 2 or a.ndim > 4 or len(a) == 0:
        raise DataError(f"{where}: expected (N, D) vectors or (N, [C,] H, W) images with N >= 1, got shape {a.shape}")
    n = len(a)
    labels = _labels(y, n, where)
    num_classes = None if labels is None else int(labels.max()) + 1
    if a.ndim == 2:  # (N, D) vectors
        if channels is not None:
            raise DataError(f"{where}: --channels applies to images; this holds (N, D) vectors")
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise DataError(f"{where}: vectors must be numbers, got dtype {a.dtype}")
        bad = _first_bad(a) if np.issubdtype(a.dtype, np.floating) else None
        if bad is not None:
            raise DataError(f"{where}: NaN/inf values (first at example {bad})")
        keep = memmapped and a.dtype == np.float32  # a memory-mapped float32 file stays mapped
        x = torch.from_numpy(a if keep else np.ascontiguousarray(a, dtype=np.float32))
        info = DataInfo(name=name, shape=(a.shape[1],), kind="vector", num_classes=num_classes)
        return Dataset(info=info, x=x, y=labels, stream=keep)
    images = _as_images(_quantize(a, where), where)  # (N, C, H, W) uint8
    keep = memmapped and images.base is not None and a.dtype == np.uint8
    if channels is not None and channels != images.shape[1]:
        images, keep = convert_channels(np.asarray(images), channels), False
    x = torch.from_numpy(images if keep else np.ascontiguousarray(images))
    info = DataInfo(name=name, shape=tuple(images.shape[1:]), kind="image", levels=256, num_classes=num_classes)
    return Dataset(info=info, x=x, y=labels, stream=keep)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, C, H, W) to 1 or 3 channels: grey repeated, or colour to luminance
    L = (299 R + 587 G + 114 B) / 1000 (ITU-R 601-2, as Pillow's ``convert("L")``)."""
    if channels == 3:
        return np.repeat(images, 3, axis=1)
    rgb = images.astype(np.uint32)
    grey = (rgb[:, 0] * 299 + rgb[:, 1] * 587 + rgb[:, 2] * 114 + 500) // 1000
    return grey[:, None].astype(np.uint8)


def from_tensor(x: Any, y: Any = None, *, name: str = "tensor", channels: int | None = None) -> Dataset:
    """Any tensor or array as a dataset: ``unigen.data.from_tensor(points)`` (N, D) or images
    (N, [C,] H, W) uint8 or floats in [0, 1] / [-1, 1]; ``y``: optional (N,) integer labels."""
    return from_array(x, y, name=name, channels=channels)


def _item_array(item: Any) -> np.ndarray:
    """One example (tensor, array or PIL image) -> array; a PIL image becomes (C, H, W)."""
    if hasattr(item, "getbands"):  # a PIL image: (H, W[, C]) -> (C, H, W)
        arr = np.asarray(item)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return item.detach().cpu().numpy() if isinstance(item, Tensor) else np.asarray(item)


def from_torch_dataset(ds: Any, *, name: str = "torch-dataset", channels: int | None = None) -> Dataset:
    """A ``torch.utils.data.Dataset`` (map-style) read once into a dataset. Each item is an example
    (tensor, array or PIL image) or an ``(example, label)`` pair."""
    try:
        n = len(ds)
    except TypeError:
        raise DataError(f"{name}: a map-style dataset with len() is needed") from None
    xs, ys = [], []
    for i in range(n):
        item = ds[i]
        pair = isinstance(item, (tuple, list))
        xs.append(_item_array(item[0] if pair else item))
        if pair and len(item) > 1:
            ys.append(int(item[1]))
    if len({a.shape for a in xs}) > 1:
        raise DataError(f"{name}: examples differ in shape ({xs[0].shape} and another); resize them first")
    return from_array(np.stack(xs), ys if len(ys) == n else None, name=name, channels=channels)


# -- files ----------------------------------------------------------------------------------------
def read_npy(path: Path, channels: int | None) -> dict[str, Dataset]:
    try:
        a = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return {"all": from_array(a, name=path.stem, where=str(path), channels=channels)}


NPZ_SPLITS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}


def read_npz(path: Path, channels: int | None) -> dict[str, Dataset]:
    """Arrays ``x`` (or the only array) and optional labels ``y``; or ``x_train``/``x_test`` with
    ``y_train``/``y_test``, the file's own split."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    where = str(path)
    if "x_train" in arrays and "x_test" in arrays:
        return {split: from_array(arrays[xk], arrays.get(yk), name=path.stem, where=f"{where}[{xk}]", channels=channels)
                for split, (xk, yk) in NPZ_SPLITS.items()}
    key = "x" if "x" in arrays else next(iter(arrays)) if len(arrays) == 1 else None
    if key is None:
        raise DataError(f"{where}: holds {', '.join(arrays) or 'no arrays'}; name the data 'x' (labels 'y'), "
                        "or 'x_train'/'x_test'")
    y = arrays.get("y", arrays.get("labels"))
    return {"all": from_array(arrays[key], y, name=path.stem, where=where, channels=channels)}


def read_csv(path: Path, channels: int | None) -> dict[str, Dataset]:
    """Rows of numbers, one vector each; a first row that is not numbers is taken as a header."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    rows = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if rows and not _numbers(rows[0][1]):
        rows = rows[1:]  # a header
    values = []
    for lineno, line in rows:
        cells = _numbers(line)
        if cells is None:
            bad = next(c for c in line.split(",") if _numbers(c) is None)
            raise DataError(f"{path}:{lineno}: non-numeric cell {bad.strip()!r}")
        values.append(cells)
    if not values:
        raise DataError(f"{path}: no rows of numbers")
    if len({len(r) for r in values}) > 1:
        raise DataError(f"{path}: rows have different numbers of columns ({len(values[0])} and "
                        f"{next(len(r) for r in values if len(r) != len(values[0]))})")
    return {"all": from_array(np.asarray(values, dtype=np.float64), name=path.stem, where=str(path), channels=channels)}


def _numbers(line: str) -> list[float] | None:
    try:
        return [float(c) for c in line.split(",")]
    except ValueError:
        return None
