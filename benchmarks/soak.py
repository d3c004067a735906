"""Soak benchmark: a long run of small training steps must hold a flat memory profile.

    python benchmarks/soak.py --steps 20000

Trains the MLP VAE on the 2-D moons data (small steps, so per-step leaks would show quickly) with
checkpoints and logging on, samples the resident set size (RSS, from /proc/self/statm) every
``--every`` steps, and prints RSS after warm-up, at the end, and their ratio. A ratio within a few
percent of 1.00 means no growth. Exits 1 when the ratio exceeds ``--max-ratio``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

import unigen
from unigen.trainer import Callback, Trainer, TrainerConfig

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


class RSSProbe(Callback):
    def __init__(self, every: int) -> None:
        self.every = every
        self.samples: list[tuple[int, float]] = []

    def on_step_end(self, trainer, step):
        if step % self.every == 0:
            self.samples.append((step, rss_mib()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--warmup", type=int, default=2_000)
    p.add_argument("--max-ratio", type=float, default=1.05)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = unigen.load_dataset("moons")
    torch.manual_seed(0)
    model = unigen.build_model("vae", data.info, {"z_dim": 2, "hidden": 64})
    probe = RSSProbe(args.every)
    with tempfile.TemporaryDirectory() as run:
        cfg = TrainerConfig(steps=args.steps, batch_size=64, checkpoint_every=2_000, log_every=100, ema_decay=0.99)
        start = time.perf_counter()
        Trainer(model, data, cfg, run_dir=run, quiet=True, callbacks=[probe]).fit()
        elapsed = time.perf_counter() - start
    warm = [r for s, r in probe.samples if s >= args.warmup]
    base, end = warm[0], warm[-1]
    ratio = end / base
    print(f"steps {args.steps}  time {elapsed:.1f} s  ({args.steps / elapsed:.0f} steps/s)")
    print(f"rss after warm-up (step {args.warmup}) {base:.1f} MiB   rss at end {end:.1f} MiB   "
          f"max {max(warm):.1f} MiB   end/warm-up ratio {ratio:.3f}")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
