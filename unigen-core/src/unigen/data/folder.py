"""A folder of images (PNG, JPEG, WebP through Pillow), with the semantics of torchvision's ImageFolder.

- Images directly in the folder: unlabelled. Images in sub-folders: each sub-folder (sorted by name)
  is a class, its images found at any depth below it; the label is the class's index.
- Sub-folders ``train/`` and ``test/``: the folder's own split, each laid out as above.
- ``image_size`` S: the shorter side is resized to S (bicubic) and the centre S x S is cropped.
  Without it every image must have the same size (else an error names two files that differ).
- ``channels`` 1 or 3 (Pillow's ``convert("L")`` / ``convert("RGB")``, alpha dropped); default: 3
  when any image is in colour, else 1.

Files are listed and their headers read once (the index, kept for the process); pixels are decoded
by a pool of threads (Pillow releases the GIL while decoding), all at once into uint8 memory, or per
batch when streamed (:class:`ImageFiles` is then the dataset's lazy array).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..model import DataInfo
from .base import Dataset

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
THREADS = min(8, os.cpu_count() or 1)


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def _layout(root: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...] | None]:
    """(files, labels or None, class names or None) of one folder, by the rule in the docstring."""
    top = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    classes = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and _images_below(d)]
    if top and classes:
        raise DataError(f"{root} has images both at its top level ({top[0].name}) and in sub-folders "
                        f"({classes[0].name}/); put every image in a class folder, or none")
    if top:
        return top, None, None
    if not classes:
        raise DataError(f"no images ({', '.join(SUFFIXES)}) in {root}")
    files, labels = [], []
    for label, d in enumerate(classes):
        found = _images_below(d)
        files += found
        labels += [label] * len(found)
    return files, labels, tuple(d.name for d in classes)


def _header(path: Path) -> tuple[tuple[int, int], str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def _verify(path: Path) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


@attrs.frozen(kw_only=True)
class FolderIndex:
    """The files of a folder, their labels and the (C, H, W) they decode to."""

    splits: dict[str, tuple[tuple[str, ...], Tensor | None]]  # "all" or "train"/"test" -> (files, labels)
    classes: tuple[str, ...] | None
    shape: tuple[int, int, int]


@functools.lru_cache(maxsize=8)
def index_folder(root: Path, image_size: int | None, channels: int | None, verify: bool = False) -> FolderIndex:
    """List ``root`` and read every header (threads); check sizes agree unless ``image_size``."""
    if not root.is_dir():
        raise DataError(f"no such folder: {root}")
    own = [root / "train", root / "test"]
    layouts = {"train": _layout(own[0]), "test": _layout(own[1])} if all(d.is_dir() for d in own) else {"all": _layout(root)}
    classes = (layouts["all"] if "all" in layouts else layouts["train"])[2]
    if "test" in layouts and layouts["test"][2] != classes:
        raise DataError(f"{root}: train/ and test/ have different class folders ({classes} and {layouts['test'][2]})")
    files = [f for fs, _, _ in layouts.values() for f in fs]
    with ThreadPoolExecutor(THREADS) as pool:
        headers = list(pool.map(_header, files))
        if verify:  # streamed data is decoded later, during training: catch truncated files now
            list(pool.map(_verify, files))
    if image_size is None:
        first = headers[0][0]
        odd = next((i for i, (size, _) in enumerate(headers) if size != first), None)
        if odd is not None:
            raise DataError(f"images differ in size: {files[0]} is {first[0]}x{first[1]}, {files[odd]} is "
                            f"{headers[odd][0][0]}x{headers[odd][0][1]}; pass --image-size S to resize and crop them")
        w, h = first
    else:
        w = h = image_size
    c = channels or (3 if any(mode not in GREY_MODES for _, mode in headers) else 1)
    # File names as str: 50,000 Path objects would take ~25 MB, as much as their pixels at 16x16.
    splits = {name: (tuple(map(str, fs)), None if labels is None else torch.tensor(labels, dtype=torch.long))
              for name, (fs, labels, _) in layouts.items()}
    return FolderIndex(splits=splits, classes=classes, shape=(c, h, w))


def to_array(im: Any, channels: int, image_size: int | None) -> np.ndarray:
    """A PIL image -> uint8 (C, H, W): converted to ``channels``; with ``image_size`` S the shorter
    side resized to S (bicubic) and the centre S x S cropped."""
    from PIL import Image

    im = im.convert("RGB" if channels == 3 else "L")
    if image_size is not None:
        scale = image_size / min(im.size)
        size = (max(image_size, round(im.size[0] * scale)), max(image_size, round(im.size[1] * scale)))
        im = im.resize(size, Image.Resampling.BICUBIC)
        left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
    arr = np.asarray(im)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)  # (H, W[, C]) -> (C, H, W)


def decode(path: str, shape: tuple[int, int, int], image_size: int | None) -> np.ndarray:
    """One file -> uint8 (C, H, W) of ``shape`` (:func:`to_array`)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = to_array(im, shape[0], image_size)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    if arr.shape != shape:
        raise DataError(f"{path} decodes to {arr.shape[2]}x{arr.shape[1]}, not {shape[2]}x{shape[1]} like the others")
    return arr


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(THREADS, thread_name_prefix="unigen-decode")


@attrs.frozen(eq=False)
class ImageFiles:
    """A lazy uint8 array (N, C, H, W) over image files: ``files[idx]`` decodes those files."""

    files: tuple[str, ...]
    image_shape: tuple[int, int, int]
    image_size: int | None
    dtype = torch.uint8

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), *self.image_shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: Tensor | slice | int) -> Tensor:
        picked = [self.files[int(i)] for i in torch.arange(len(self.files))[index].reshape(-1)]
        out = np.empty((len(picked), *self.image_shape), dtype=np.uint8)  # (B, C, H, W)

        def put(i: int) -> None:
            out[i] = decode(picked[i], self.image_shape, self.image_size)

        list(_pool().map(put, range(len(picked))))
        return torch.from_numpy(out)


def read_folder(root: Path, image_size: int | None, channels: int | None, stream: bool | None,
                stream_above: int) -> dict[str, Dataset]:
    """The folder's splits ("all", or "train"/"test") over its files, to be decoded into memory or
    streamed (``stream`` None: streamed when the uint8 pixels would exceed ``stream_above`` bytes)."""
    index = index_folder(root, image_size, channels, verify=bool(stream))
    n = sum(len(fs) for fs, _ in index.splits.values())
    if stream is None:
        stream = n * int(np.prod(index.shape)) > stream_above
        if stream:
            index = index_folder(root, image_size, channels, verify=True)
    out = {}
    for split, (files, labels) in index.splits.items():
        info = DataInfo(name=root.name, shape=index.shape, kind="image", levels=256,
                        num_classes=None if index.classes is None else len(index.classes))
        # Lazy either way: a split that is not streamed is decoded when it is asked for (sources._split).
        out[split] = Dataset(info=info, x=ImageFiles(files, index.shape, image_size), y=labels, stream=stream)
    return out
