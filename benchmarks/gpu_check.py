"""The GPU check, one run (``benchmarks/gpu_check.sh`` launches it under torchrun on every visible GPU):
train ddpm on the colour data set ``shapes`` (3x32x32) with bf16 autocast, ``--compile`` and gradient
accumulation through ``unigen train``, then run the bare torch loop on the same model, batch and
settings on each rank, and print (rank 0) steps/s, peak memory and images/s of both.

The trainer's steady rate comes from its first and last log records (each holds the mean rate since
the start), so compilation and warm-up are left out; the bare loop is timed after as many warm-up
steps as the first log interval.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

import unigen
from unigen.cli import main as unigen_main
from unigen.data import Batch, as_floats


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # CPU smoke run: the process's peak RSS


def _steady_rate(metrics: Path) -> float:
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    a, b = records[0], records[-1]
    elapsed = b["step"] / b["steps_per_sec"] - a["step"] / a["steps_per_sec"]
    return (b["step"] - a["step"]) / elapsed


def _bare(args: argparse.Namespace, device: str) -> float:
    """Steps/s of a plain loop: the same model and loss, autocast, compiled network, K micro-batches."""
    data = unigen.load_dataset("shapes")
    torch.manual_seed(0)
    model = unigen.build_model("ddpm", data.info, {}).to(device).train()
    for m in model.children() if args.compile else ():
        if any(True for _ in m.parameters()):
            m.forward = torch.compile(m.forward)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    raw = torch.as_tensor(data.raw).to(device)
    levels = data.info.levels
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    warm = args.log_every
    for i in range(warm + args.steps):
        if i == warm:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for _ in range(args.grad_accum):
            idx = torch.randint(len(raw), (args.batch_size,), device=device)
            with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
                loss = model.loss(Batch(as_floats(raw[idx], levels), None, None))
            (loss.float() / args.grad_accum).backward()
        opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return args.steps / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128, help="per rank and micro-batch")
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--device", default="cuda")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="(a quick smoke run on a CPU)")
    args = p.parse_args()
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    # every rank names the same run directory (rank 0 alone writes it): the launcher's, or a new one
    out = Path(os.environ.get("UNIGEN_GPU_CHECK_OUT") or tempfile.mkdtemp(prefix="unigen-gpu-check-"))
    run, device = out / "ddpm-shapes", args.device
    rc = unigen_main(["train", "ddpm", "--data", "shapes", "--steps", str(args.steps), "--batch-size",
                      str(args.batch_size), "--grad-accum", str(args.grad_accum), "--precision", args.precision,
                      *(["--compile"] if args.compile else []), "--device", device, "--out", str(run), "--quiet",
                      "--set", f"log_every={args.log_every}", "--set", "checkpoint_minutes=0.0"])
    if rc:
        return rc
    trainer_mb = _peak_mb(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    bare_rate = _bare(args, device)
    bare_mb = _peak_mb(device)
    if rank == 0:
        rate = _steady_rate(run / "metrics.jsonl")
        per_step = args.batch_size * args.grad_accum
        name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
        print(f"gpu_check: ddpm on shapes 3x32x32, {world} x {name}, torch {torch.__version__}, {args.steps} steps, "
              f"batch {args.batch_size} x grad-accum {args.grad_accum} per rank, {args.precision}{', --compile' if args.compile else ''}")
        print(f"unigen train (DDP over {world}): {rate:.2f} steps/s, {rate * per_step * world:.0f} images/s in all, "
              f"{rate * per_step:.0f} images/s per rank, peak memory {trainer_mb:.0f} MiB (rank 0)")
        print(f"bare torch loop (one rank, no reduction): {bare_rate:.2f} steps/s, {bare_rate * per_step:.0f} "
              f"images/s, peak memory {bare_mb:.0f} MiB")
        print(f"unigen per rank / bare loop: {rate / bare_rate:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
