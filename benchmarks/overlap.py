"""Step time of the blocking gradient reduction (one all-reduce after the backward pass) against the
bucketed one that overlaps the backward pass (unigen.reduce), at 2 gloo ranks on CPU.

    OMP_NUM_THREADS=1 python benchmarks/overlap.py [--width 1024] [--layers 8] [--steps 20]

Each rank runs forward + backward + reduction + SGD step on an MLP of ``layers`` square layers
(width 1024, 8 layers: 8.4M parameters, 32 MB of gradients, two buckets of at most 25 MB); the median step time of
``steps`` steps after 3 warm-up steps is printed per method (rank 0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from unigen.reduce import BucketedReducer, all_reduce_mean


def _steps(rank: int, world: int, args: argparse.Namespace, overlapped: bool) -> list[float]:
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(args.layers) for m in (nn.Linear(args.width, args.width), nn.Tanh())])
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=1e-3)
    reducer = BucketedReducer({"net": params}, world) if overlapped else None
    x = torch.randn(args.batch, args.width, generator=torch.Generator().manual_seed(rank))
    times = []
    for i in range(args.steps + 3):
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if reducer is not None:
            reducer.arm("net")
        net(x).pow(2).mean().backward()
        if reducer is not None:
            reducer.finish()
        else:
            all_reduce_mean(params, world)
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return times


def _worker(rank: int, world: int, args: argparse.Namespace) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    for name, overlapped in (("blocking", False), ("overlapped", True), ("blocking ", False), ("overlapped ", True)):
        results.setdefault(name.strip(), []).extend(_steps(rank, world, args, overlapped))
    if rank == 0:
        n = sum(p.numel() for p in nn.Linear(args.width, args.width).parameters()) * args.layers
        print(f"2 gloo ranks, MLP {args.layers}x{args.width} ({n / 1e6:.1f}M parameters, {4 * n / 2**20:.0f} MB "
              f"of gradients), batch {args.batch} per rank, torch {torch.__version__}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')}")
        for name, times in results.items():
            print(f"{name:>10}: median step {1e3 * statistics.median(times):.1f} ms over {len(times)} steps")
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--port", type=int, default=29533)
    args = p.parse_args()
    mp.spawn(_worker, args=(2, args), nprocs=2)


if __name__ == "__main__":
    main()
