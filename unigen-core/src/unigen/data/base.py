"""Batches, datasets and the batch iterator (re-exported by :mod:`unigen.data`)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs
import torch
from torch import Tensor

from ..errors import DataError
from ..model import DataInfo


@attrs.frozen(slots=True)
class Batch:
    """One batch. ``x``: (B, *D) float; ``y``: (B,) long labels; ``text``: (B, L) long tokens."""

    x: Tensor
    y: Tensor | None = None
    text: Tensor | None = None

    def to(self, device: Any) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(self.x.to(device, non_blocking=True), move(self.y), move(self.text))

    def __len__(self) -> int:
        return self.x.shape[0]


@attrs.frozen(kw_only=True, eq=False)
class Dataset:
    """A split. ``raw`` (keyword ``x``): (N, *D) floats, or uint8 level indices {0..K-1} with
    ``info.levels = K`` (images), or a lazy array of either. ``x`` is always the float view."""

    info: DataInfo
    raw: Any = attrs.field(alias="x")  # Tensor (N, *D) float or uint8, or a lazy array
    y: Tensor | None = None
    text: Tensor | None = None
    captions: tuple[str, ...] | None = None  # class index -> caption, for multimodal data
    stream: bool = False  # read each batch from the host (lazy or memory-mapped data) instead of copying it all
    _float_view: list[Tensor] = attrs.field(factory=list, init=False, repr=False)

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    @property
    def x(self) -> Tensor:
        """All examples as floats (N, *D), in [-1, 1] for images. Converted once and kept: prefer
        :meth:`floats` with an index for large data."""
        if not self._float_view:
            self._float_view.append(self.floats(slice(None)))
        return self._float_view[0]

    def floats(self, index: Tensor | slice) -> Tensor:
        """The examples at ``index`` as floats, (len(index), *D)."""
        return as_floats(self.raw[index], self.info.levels)

    def batch(self, index: Tensor | slice) -> Batch:
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return Batch(self.floats(index), pick(self.y), pick(self.text))

    def check_finite(self) -> None:
        if not self.raw.dtype.is_floating_point:
            return
        for start in range(0, len(self), 65536):  # in chunks: a memory-mapped array is not read at once
            chunk = torch.as_tensor(self.raw[start : start + 65536])
            bad = ~torch.isfinite(chunk).flatten(1).all(1)
            if bad.any():
                raise DataError(f"dataset {self.info.name!r} has NaN/inf values (first at example "
                                f"{start + int(bad.nonzero()[0])})")


def to_levels(x: Tensor, levels: int) -> Tensor:
    """[-1, 1] floats -> integer levels {0..K-1} (as long)."""
    return ((x + 1) / 2 * (levels - 1)).round().clamp(0, levels - 1).long()


def from_levels(v: Tensor, levels: int, dtype: torch.dtype | None = None) -> Tensor:
    """Integer levels {0..K-1} -> [-1, 1] floats of ``dtype`` (the default float dtype when None):
    x = 2 v / (K - 1) - 1."""
    return v.to(dtype or torch.get_default_dtype()) / (levels - 1) * 2 - 1


def as_floats(raw: Tensor, levels: int | None) -> Tensor:
    """Stored values -> floats: integer levels through :func:`from_levels`, floats as they are."""
    if raw.dtype.is_floating_point:
        return raw
    if levels is None:
        return raw.float()
    return from_levels(raw, levels)


def _flip_mask(seed: int, epoch: int, position: int, n: int) -> Tensor:
    """Which of the global batch's n examples are flipped: a function of (seed, epoch, position)
    only, so a resumed run flips exactly what the uninterrupted one did."""
    g = torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_033 + position) % (2**63))
    return torch.rand(n, generator=g) < 0.5


class BatchIterator:
    """Shuffled batches without replacement, epoch after epoch, exactly resumable.

    The permutation of epoch e is drawn from ``seed`` and ``e`` alone, so the state is two integers.
    With ``world_size > 1`` each rank takes its own slice of the global batch
    (``global_batch = batch_size * world_size``), so N ranks see together what one process sees
    with the global batch. The last incomplete batch of an epoch is dropped. ``flip``: mirror each
    image left-right with probability 1/2 (drawn per (seed, epoch, position), see :func:`_flip_mask`).

    In-memory data is copied to the device once and a batch is one ``index_select``; streamed data
    (``data.stream``) is read per batch on the host, the next batch in a background thread, and
    converted to floats on the device. Both give the same batches.
    """

    def __init__(
        self, data: Dataset, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
        device: Any = "cpu", flip: bool = False,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.global_batch = batch_size * world_size
        if len(data) < self.global_batch:
            raise DataError(
                f"dataset {data.info.name!r} has {len(data)} examples, fewer than one batch of "
                f"{self.global_batch}; lower --batch-size"
            )
        if flip and not data.info.is_image:
            raise DataError(f"flip needs images; dataset {data.info.name!r} holds {data.info.kind} data")
        self.flip = flip
        self.per_epoch = len(data) // self.global_batch
        self.epoch = 0
        self.position = 0  # batches consumed in this epoch
        self._perm: Tensor | None = None
        self._perm_epoch = -1
        self.stream = data.stream
        self._next: tuple[tuple[int, int], Future] | None = None
        self._pool: ThreadPoolExecutor | None = None
        if self.stream:
            self._x, self._y, self._text = data.raw, data.y, data.text
        else:  # keep the data on the training device once, so a batch is one index_select
            self._x = torch.as_tensor(data.raw).to(self.device)
            self._y = None if data.y is None else data.y.to(self.device)
            self._text = None if data.text is None else data.text.to(self.device)

    def _permutation(self, epoch: int) -> Tensor:
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(len(self.data), generator=g)
            self._perm, self._perm_epoch = (perm if self.stream else perm.to(self.device)), epoch
        assert self._perm is not None
        return self._perm

    def _read(self, epoch: int, position: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The stored values of batch ``position`` of ``epoch`` for this rank (host or device)."""
        start = position * self.global_batch + self.rank * self.batch_size
        idx = self._permutation(epoch)[start : start + self.batch_size]
        if self.stream:
            pick = lambda t: None if t is None else torch.as_tensor(t[idx])  # noqa: E731
        else:
            pick = lambda t: None if t is None else t.index_select(0, idx)  # noqa: E731
        if not self.stream:
            return self._x.index_select(0, idx), pick(self._y), pick(self._text)
        x = torch.as_tensor(self._x[idx])
        if self.device.type == "cuda":  # page-locked, so the copy to the GPU is asynchronous (in the reading thread)
            x = x.pin_memory()
        return x, pick(self._y), pick(self._text)

    def _fetch(self, epoch: int, position: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if not self.stream:
            return self._read(epoch, position)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="unigen-data")
        key = (epoch, position)
        future = self._next[1] if self._next is not None and self._next[0] == key else None
        out = future.result() if future is not None else self._read(epoch, position)
        following = (epoch, position + 1) if position + 1 < self.per_epoch else (epoch + 1, 0)
        self._permutation(following[0])  # drawn here, not in the thread, which only reads
        self._next = (following, self._pool.submit(self._read, *following))
        return out

    def __iter__(self) -> "BatchIterator":
        return self

    def __next__(self) -> Batch:
        if self.position >= self.per_epoch:
            self.epoch += 1
            self.position = 0
        raw, y, text = self._fetch(self.epoch, self.position)
        x = as_floats(raw.to(self.device, non_blocking=True), self.data.info.levels)  # (B, *D)
        if self.flip:
            mask = _flip_mask(self.seed, self.epoch, self.position, self.global_batch)
            mask = mask[self.rank * self.batch_size : (self.rank + 1) * self.batch_size].to(self.device)
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)  # (B, C, H, W)
        self.position += 1
        move = lambda t: None if t is None else t.to(self.device, non_blocking=True)  # noqa: E731
        return Batch(x, move(y), move(text))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        self._perm, self._perm_epoch, self._next = None, -1, None
