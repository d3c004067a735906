"""Data sources: where a user's own data comes from, named by one string.

``--data`` (and :func:`unigen.load_dataset`) accepts a registered dataset id (``unigen datasets``),
a path (a directory is a folder of images, a file is read by its suffix: ``.npy``, ``.npz``,
``.csv``), or ``KIND:LOCATION`` to settle ambiguity: ``folder:PATH``, ``npy:PATH``, ``npz:PATH``,
``csv:PATH``, ``hf:NAME_OR_PATH``. Kinds are a table (:data:`KINDS`), not a branch over names.

A source's canonical string (:attr:`Source.id`: the kind, the absolute path and the options, e.g.
``folder:/data/pngs?size=32&channels=3``) is what a run records as its dataset, so that eval,
sample and resume read exactly the same data.

Splits: a source's own split is used when it has one (``train/`` and ``test/`` sub-folders, an
``.npz`` with ``x_train``/``x_test``, a Hugging Face ``DatasetDict``); otherwise a fixed seeded
permutation puts 10% of the examples (at least one) in ``test`` and the rest in ``train``.

Streaming: with ``stream`` true, or when it is not given and the uint8 pixels would take more than a
quarter of physical memory, a folder is decoded per batch (:class:`unigen.data.folder.ImageFiles`);
a ``.npy`` of uint8 images or float32 vectors is always memory-mapped.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import attrs
import torch
from attrs import validators as v
from torch import Tensor

from ..errors import DataError, UnknownId
from ..registry import DatasetSpec
from . import arrays, folder, hf
from .base import Dataset

TEST_FRACTION = 0.1
SPLIT_SEED = 0


@attrs.frozen(kw_only=True)
class SourceKind:
    """How to read one kind of source: ``read(location, source) -> {"all"} or {"train", "test"}``."""

    id: str
    read: Callable[[str, "Source"], dict[str, Dataset]]
    suffixes: tuple[str, ...] = ()  # files recognised by suffix when given as a bare path
    directory: bool = False  # a bare directory path is this kind
    local: bool = True  # the location is a path on this machine (made absolute)
    images: bool = False  # --image-size applies
    description: str = ""


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _arrays_only(s: "Source", what: str) -> None:
    if s.image_size is not None:
        raise DataError(f"--image-size applies to image files (folder, hf), not to {what} {s.location}")


def _read_folder(location: str, s: "Source") -> dict[str, Dataset]:
    return folder.read_folder(Path(location), s.image_size, s.channels, s.stream, _physical_memory() // 4)


def _read_file(reader: Callable[[Path, int | None], dict[str, Dataset]], what: str):
    def read(location: str, s: "Source") -> dict[str, Dataset]:
        _arrays_only(s, what)
        path = Path(location)
        if not path.is_file():
            raise DataError(f"no such file: {path}")
        return reader(path, s.channels)

    return read


KINDS: dict[str, SourceKind] = {k.id: k for k in (
    SourceKind(id="folder", read=_read_folder, directory=True, images=True,
               description="a folder of PNG/JPEG/WebP images; class sub-folders are labels"),
    SourceKind(id="npy", read=_read_file(arrays.read_npy, "the .npy file"), suffixes=(".npy",),
               description="an array (N, D) of vectors or (N, [C,] H, W) of images, memory-mapped"),
    SourceKind(id="npz", read=_read_file(arrays.read_npz, "the .npz file"), suffixes=(".npz",),
               description="arrays x [, y] or x_train, x_test [, y_train, y_test]"),
    SourceKind(id="csv", read=_read_file(arrays.read_csv, "the .csv file"), suffixes=(".csv",),
               description="rows of numbers, one vector each (a header row is skipped)"),
    SourceKind(id="hf", read=lambda loc, s: hf.read_hf(loc, s.image_size, s.channels), local=False, images=True,
               description="a Hugging Face datasets folder (save_to_disk) or hub name"),
)}


@attrs.frozen(kw_only=True)
class Source:
    """One source of data: its kind, location and options. ``load(split)`` gives a split."""

    kind: str = attrs.field(validator=v.in_(tuple(KINDS)))
    location: str
    image_size: int | None = attrs.field(default=None, validator=v.optional([v.instance_of(int), v.gt(0)]))
    channels: int | None = attrs.field(default=None, validator=v.optional(v.in_((1, 3))))
    stream: bool | None = None  # None: decided by size

    @property
    def id(self) -> str:
        """The canonical string, e.g. ``folder:/data/pngs?size=32``; :meth:`parse` reads it back.
        Streaming is left out: it changes how the data is read, not what it is."""
        options = {"size": self.image_size, "channels": self.channels}  # not stream: the data is the same
        query = urlencode({k: val for k, val in options.items() if val is not None})
        return f"{self.kind}:{self.location}" + (f"?{query}" if query else "")

    @classmethod
    def parse(cls, text: str, *, image_size: int | None = None, channels: int | None = None,
              stream: bool | None = None) -> "Source":
        """``KIND:LOCATION[?size=S&channels=C&stream=0|1]`` or a bare path; keyword options win."""
        kind, _, rest = text.partition(":")
        if kind not in KINDS or not rest:
            kind, rest = _recognise(text), text
        location, _, query = rest.partition("?")
        opts = dict(parse_qsl(query))
        unknown = set(opts) - {"size", "channels", "stream"}
        if unknown:
            raise DataError(f"{text}: unknown option {sorted(unknown)[0]!r}; known: size, channels, stream")
        try:
            size = image_size if image_size is not None else int(opts["size"]) if "size" in opts else None
            chans = channels if channels is not None else int(opts["channels"]) if "channels" in opts else None
        except ValueError:
            raise DataError(f"{text}: size and channels must be whole numbers") from None
        strm = stream if stream is not None else bool(int(opts["stream"])) if "stream" in opts else None
        if KINDS[kind].local or Path(location).expanduser().exists():  # a path: made absolute
            location = str(Path(location).expanduser().absolute())
        if size is not None and not KINDS[kind].images:
            raise DataError(f"--image-size applies to image files (folder, hf), not to {kind}:{location}")
        try:
            return cls(kind=kind, location=location, image_size=size, channels=chans, stream=strm)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{text}: {exc}") from None

    def load(self, split: str = "train", data_dir: str | None = None) -> Dataset:
        """Split ``train`` or ``test`` (any other name: test), by the rule in the module docstring."""
        if data_dir:
            raise DataError(f"--data-dir is not used with --data {self.id}: the data is read from its own path")
        return _split(self, "train" if split == "train" else "test")


@functools.lru_cache(maxsize=4)
def _read(source: Source) -> dict[str, Dataset]:
    return KINDS[source.kind].read(source.location, source)


@functools.lru_cache(maxsize=8)
def _split(source: Source, split: str) -> Dataset:
    """One split; lazy data that is not streamed (a folder that fits in memory) is decoded here,
    only this split's files, so memory holds each example once."""
    parts = _read(source)
    data = parts[split] if "all" not in parts else take(parts["all"], split_index(len(parts["all"]), split, where=source.id))
    if not data.stream and not isinstance(data.raw, Tensor):
        data = attrs.evolve(data, x=torch.as_tensor(data.raw[:]))  # (N, C, H, W) uint8
    return data


def _recognise(path_text: str) -> str:
    path = Path(path_text).expanduser()
    if path.is_dir():
        return next(k.id for k in KINDS.values() if k.directory)
    for k in KINDS.values():
        if path.suffix.lower() in k.suffixes:
            return k.id
    if not path.exists():
        raise DataError(f"no such file or folder: {path_text}")
    known = ", ".join(s for k in KINDS.values() for s in k.suffixes)
    raise DataError(f"{path_text}: unknown file type {path.suffix or '(no suffix)'!r}; a folder of images or "
                    f"{known}, or say the kind as KIND:PATH (kinds: {', '.join(KINDS)})")


def split_index(n: int, split: str, *, where: str) -> Tensor:
    """Sorted indices of ``split``: a permutation seeded with :data:`SPLIT_SEED` puts its first
    max(1, round(n / 10)) examples in ``test``, the rest in ``train``."""
    if n < 2:
        raise DataError(f"{where}: {n} example(s); at least 2 are needed for a train and a test split")
    n_test = max(1, round(n * TEST_FRACTION))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return (perm[:n_test] if split != "train" else perm[n_test:]).sort().values


@attrs.frozen(eq=False)
class Rows:
    """A lazy array that is ``base[index]`` without copying: a split of streamed data."""

    base: Any
    index: Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: Tensor | slice | int) -> Tensor:
        return torch.as_tensor(self.base[self.index[i]])


def take(data: Dataset, index: Tensor) -> Dataset:
    """The examples at ``index``: copied when in memory, a :class:`Rows` view of lazy or streamed data."""
    pick = lambda t: None if t is None else t[index]  # noqa: E731
    raw = data.raw[index] if isinstance(data.raw, Tensor) and not data.stream else Rows(data.raw, index)
    return attrs.evolve(data, x=raw, y=pick(data.y), text=pick(data.text))


def dataset_spec(name: str, host: Any, *, image_size: int | None = None, channels: int | None = None,
                 stream: bool | None = None) -> DatasetSpec:
    """A registered dataset, or the :class:`Source` that ``name`` names, as a :class:`DatasetSpec`."""
    options: dict[str, Any] = {"image_size": image_size, "channels": channels, "stream": stream}
    if name in host.datasets:
        given = [k for k, val in options.items() if val is not None]
        if given:
            raise DataError(f"--{given[0].replace('_', '-')} applies to your own data (a folder or file), "
                            f"not to the built-in dataset {name!r}")
        return host.datasets[name]
    kind = name.partition(":")[0]
    path = Path(name).expanduser()
    if kind not in KINDS and not path.exists() and "/" not in name and not path.suffix:
        raise UnknownId(host.datasets.unknown_message(name) + "; or give a folder or a .npy/.npz/.csv file "
                        f"as --data PATH, or KIND:PATH (kinds: {', '.join(KINDS)})")
    source = Source.parse(name, **options)
    source.load("test")  # both splits are read (and every file checked) now, before any output
    data_kind = source.load("train").info.kind
    return DatasetSpec(id=source.id, load=source.load, kind=data_kind, reads_files=False,
                       description=KINDS[source.kind].description)


def check_data_dir(spec: DatasetSpec, data_dir: str | None) -> None:
    """``--data-dir`` given to a dataset that reads no files is a mistake, not something to ignore."""
    if data_dir and not spec.reads_files:
        raise DataError(f"--data-dir is not used by {spec.id!r}: it reads no files from a data directory "
                        "(to train on your own files, pass them as --data PATH)")
