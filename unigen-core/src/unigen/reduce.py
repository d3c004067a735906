"""Averaging gradients over ranks: blocking after the backward pass, or overlapped with it.

N ranks with batch B step exactly as one process with batch N*B for a mean loss when each gradient
is replaced by its mean over the ranks, g = (1/N) sum_r g_r (what DistributedDataParallel does).

:func:`all_reduce_mean` does it after the whole backward pass: one coalesced all-reduce per
parameter group. :class:`BucketedReducer` overlaps it with the backward pass, as DDP does (Li et
al. 2020, "PyTorch Distributed", Sec. 3.2.3): the group's parameters are cut into buckets of about
``bucket_mb`` MB in the reverse of their registration order (roughly the order in which backward
produces their gradients); a ``post_accumulate_grad`` hook on each parameter counts the gradients
that are ready, and a full bucket is flattened and sent with an asynchronous all-reduce while the
backward pass goes on. :meth:`BucketedReducer.finish` launches what is left (parameters that got no
gradient count as zeros), waits, and writes the means back. Only the armed group is reduced (a GAN's
critic step leaves the generator alone), and only once per optimizer step: the trainer arms it
before the last of its accumulated micro-batches. Public torch API only.

Every rank must produce gradients in the same order (the same graph on each rank), as for DDP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def all_reduce_mean(params: Sequence[torch.nn.Parameter], world_size: int) -> None:
    """The blocking reduction: after the backward pass, one coalesced all-reduce of the group."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world_size)
    _write_back(params, flat)


def _write_back(params: Sequence[torch.nn.Parameter], flat: Tensor) -> None:
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        if p.grad is None:
            p.grad = g.view_as(p).clone()
        else:
            p.grad.copy_(g.view_as(p))


class BucketedReducer:
    """Asynchronous bucketed all-reduce of the armed group's gradients during the backward pass."""

    def __init__(self, groups: Mapping[str, Sequence[torch.nn.Parameter]], world_size: int,
                 bucket_mb: float = 25.0) -> None:
        self.world_size = world_size
        limit = bucket_mb * 2**20
        self.buckets: dict[str, list[list[torch.nn.Parameter]]] = {}
        self._where: dict[int, tuple[str, int]] = {}  # id(param) -> (group, bucket)
        for group, params in groups.items():
            buckets: list[list[torch.nn.Parameter]] = [[]]
            size = 0
            for p in reversed(list(params)):  # backward meets the last layers first
                if buckets[-1] and size + p.numel() * p.element_size() > limit:
                    buckets.append([])
                    size = 0
                buckets[-1].append(p)
                size += p.numel() * p.element_size()
                self._where[id(p)] = (group, len(buckets) - 1)
            self.buckets[group] = buckets
            for p in params:
                p.register_post_accumulate_grad_hook(self._ready)
        self.armed: str | None = None
        self._count: list[int] = []
        self._work: dict[int, tuple[object, Tensor]] = {}

    def arm(self, group: str) -> None:
        """Reduce ``group``'s gradients as the next backward pass produces them."""
        self.armed = group
        self._count = [0] * len(self.buckets[group])
        self._work = {}

    def _ready(self, p: torch.nn.Parameter) -> None:
        where = self._where.get(id(p))
        if where is None or where[0] != self.armed:
            return
        b = where[1]
        self._count[b] += 1
        if self._count[b] == len(self.buckets[where[0]][b]):
            self._launch(b)

    def _launch(self, b: int) -> None:
        import torch.distributed as dist

        assert self.armed is not None
        params = self.buckets[self.armed][b]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        self._work[b] = (dist.all_reduce(flat, async_op=True), flat)

    def finish(self) -> None:
        """Launch the buckets not yet sent (in bucket order, the same on every rank), wait for all,
        and write the means into ``p.grad``; disarm."""
        group = self.armed
        if group is None:
            return
        for b in range(len(self.buckets[group])):
            if b not in self._work:
                self._launch(b)
        for b, (work, flat) in sorted(self._work.items()):
            work.wait()  # type: ignore[attr-defined]
            flat.div_(self.world_size)
            _write_back(self.buckets[group][b], flat)
        self.armed, self._work = None, {}
