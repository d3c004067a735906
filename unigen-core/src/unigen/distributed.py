"""torch.distributed for ``torchrun -m unigen train ...``: process group set-up from the
environment torchrun provides (RANK, WORLD_SIZE, LOCAL_RANK), gloo on CPU, NCCL on GPUs."""

from __future__ import annotations

import os

import attrs
import torch


@attrs.define
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu") -> "DistributedContext":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
        here = False
        if not dist.is_initialized():
            backend = "nccl" if device == "cuda" else "gloo"
            if device == "cuda":
                torch.cuda.set_device(local)
            dist.init_process_group(backend=backend)
            here = True
        return cls(rank=rank, world_size=world, local_rank=local, initialized_here=here)

    def close(self) -> None:
        if self.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()
