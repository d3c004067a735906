"""Energy Matching (Balcerak et al. 2025) against the contrastive EBM (Du & Mordatch 2019) on 2-D data,
with the same training budget (steps, batch, learning rate) and each model's default sampler.

    python benchmarks/energy_matching.py --steps 600 --seeds 0 1 2 --data moons 8gaussians

Prints one Markdown row per model and dataset: the mean and range over seeds of the MMD^2 (multi-scale
RBF, :func:`unigen.metrics.mmd.mmd2`) between 1,000 samples and 1,000 fresh points of the toy, the
training seconds, and the two references: a fresh draw of the toy itself (the noise floor) and N(0, I).
"""

from __future__ import annotations

import argparse
import time

import torch

from unigen.data.toy import sample_toy
from unigen.metrics.mmd import mmd2
from unigen.testing import quick_train

MODELS = ("energy-matching", "ebm")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", nargs="+", default=["moons", "8gaussians"])
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args()
    print("| data | model | MMD^2 mean | MMD^2 range | train s | fresh toy | N(0, I) |")
    print("|---|---|---|---|---|---|---|")
    for data in args.data:
        fresh = sample_toy(data, args.n, seed=12345)
        floor = float(mmd2(sample_toy(data, args.n, seed=99), fresh))
        normal = float(mmd2(torch.randn(args.n, 2, generator=torch.Generator().manual_seed(2)), fresh))
        for model_id in MODELS:
            scores, seconds = [], []
            for seed in args.seeds:
                started = time.perf_counter()
                model = quick_train(model_id, data, steps=args.steps, batch_size=args.batch_size, seed=seed)
                seconds.append(time.perf_counter() - started)
                torch.manual_seed(seed + 1)
                with torch.no_grad():
                    scores.append(float(mmd2(model.sample(args.n), fresh)))
            mean = sum(scores) / len(scores)
            print(f"| {data} | {model_id} | {mean:.4f} | {min(scores):.4f}-{max(scores):.4f} | "
                  f"{sum(seconds) / len(seconds):.0f} | {floor:.4f} | {normal:.3f} |", flush=True)


if __name__ == "__main__":
    main()
