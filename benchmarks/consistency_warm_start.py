"""How the consistency student starts, measured on moons: init=copy, init=teacher, init=random.

Trains one ddpm teacher, then distils it ``--cd-steps`` steps with each ``init`` (same seeds, same
budget) and prints the 1-step MMD^2 of each student's samples to
fresh moons points (and the teacher's own 1-step DDIM, the untrained student's 1-step samples and a
standard normal, for scale).

    OMP_NUM_THREADS=1 python benchmarks/consistency_warm_start.py --out /tmp/cd-bench --seeds 2 --teacher-steps 1500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import unigen
from unigen.data.toy import sample_toy
from unigen.metrics.mmd import mmd2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/cd-bench")
    p.add_argument("--teacher-steps", type=int, default=2000)
    p.add_argument("--cd-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--lr", type=float, default=2e-4)  # consistency's trainer default
    args = p.parse_args()
    out = Path(args.out)
    torch.manual_seed(0)
    teacher = unigen.train("ddpm", "moons", out=out / "teacher", steps=args.teacher_steps, batch_size=128, lr=2e-3,
                           net="mlp", hidden=256, depth=3, quiet=True)
    ref = sample_toy("moons", args.n, seed=123)
    score = lambda x: float(mmd2(x, ref))  # noqa: E731
    rows: dict[str, list[float]] = {"N(0, I) (scale)": [score(torch.randn(args.n, 2))], "teacher 1-step DDIM": [], "init=teacher, untrained": [],
                                    "init=random": [], "init=teacher": [], "init=copy": []}
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        rows["teacher 1-step DDIM"].append(score(teacher.model.sample(args.n, 1)))
        for init in ("random", "teacher", "copy"):
            run = unigen.train("consistency", "moons", out=out / f"cd-{init}-{seed}", steps=args.cd_steps,
                               batch_size=128, seed=seed, lr=args.lr, teacher=str(out / "teacher"), init=init, quiet=True)
            if init == "teacher" and seed == 0:
                torch.manual_seed(seed)
                fresh = unigen.build_model("consistency", run.model.data, {"teacher": str(out / "teacher"), "init": init})
                rows["init=teacher, untrained"].append(score(fresh.sample(args.n, 1)))
            torch.manual_seed(seed)
            rows[f"init={init}"].append(score(run.model.sample(args.n, 1)))
    summary = {k: {"mean": sum(v) / len(v), "runs": v} for k, v in rows.items() if v}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
