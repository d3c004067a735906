"""Datasets: in-memory tensors, batches and a resumable, shardable batch iterator.

Images are float tensors in [-1, 1], shape (N, C, H, W), with the number of quantization levels K
so that bits/dim is computed on the discrete data. Vectors (2-D toys) come as they are.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from ..model import DataInfo

__all__ = ["Batch", "Dataset", "BatchIterator", "to_levels", "from_levels"]


@attrs.frozen(slots=True)
class Batch:
    """One batch. ``x``: (B, *D) float; ``y``: (B,) long labels; ``text``: (B, L) long tokens."""

    x: Tensor
    y: Tensor | None = None
    text: Tensor | None = None

    def to(self, device: Any) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.x), move(self.y), move(self.text))

    def __len__(self) -> int:
        return self.x.shape[0]


@attrs.frozen(kw_only=True)
class Dataset:
    """A split held in memory."""

    info: DataInfo
    x: Tensor
    y: Tensor | None = None
    text: Tensor | None = None
    captions: tuple[str, ...] | None = None  # class index -> caption, for multimodal data

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, index: Tensor | slice) -> Batch:
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return Batch(self.x[index], pick(self.y), pick(self.text))

    def check_finite(self) -> None:
        from ..errors import DataError

        if not torch.isfinite(self.x).all():
            bad = int((~torch.isfinite(self.x)).flatten(1).any(1).nonzero()[0])
            raise DataError(f"dataset {self.info.name!r} has NaN/inf values (first at example {bad})")


def to_levels(x: Tensor, levels: int) -> Tensor:
    """[-1, 1] floats -> integer levels {0..K-1} (as long)."""
    return ((x + 1) / 2 * (levels - 1)).round().clamp(0, levels - 1).long()


def from_levels(v: Tensor, levels: int) -> Tensor:
    """Integer levels {0..K-1} -> [-1, 1] floats."""
    return v.float() / (levels - 1) * 2 - 1


class BatchIterator:
    """Shuffled batches without replacement, epoch after epoch, exactly resumable.

    The permutation of epoch e is drawn from ``seed`` and ``e`` alone, so the state is two integers.
    With ``world_size > 1`` each rank takes its own slice of the global batch
    (``global_batch = batch_size * world_size``), so N ranks see together what one process sees
    with the global batch. The last incomplete batch of an epoch is dropped.
    """

    def __init__(
        self, data: Dataset, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
        device: Any = "cpu",
    ) -> None:
        from ..errors import DataError

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
        self.per_epoch = len(data) // self.global_batch
        self.epoch = 0
        self.position = 0  # batches consumed in this epoch
        self._perm: Tensor | None = None
        # Keep the data on the training device once, so a batch is one index_select.
        self._x = data.x.to(self.device)
        self._y = None if data.y is None else data.y.to(self.device)
        self._text = None if data.text is None else data.text.to(self.device)

    def _permutation(self) -> Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(len(self.data), generator=g).to(self.device)
        return self._perm

    def __iter__(self) -> "BatchIterator":
        return self

    def __next__(self) -> Batch:
        if self.position >= self.per_epoch:
            self.epoch += 1
            self.position = 0
            self._perm = None
        start = self.position * self.global_batch + self.rank * self.batch_size
        idx = self._permutation()[start : start + self.batch_size]
        self.position += 1
        pick = lambda t: None if t is None else t.index_select(0, idx)  # noqa: E731
        return Batch(pick(self._x), pick(self._y), pick(self._text))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        self._perm = None
