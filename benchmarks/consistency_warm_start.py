"""How the consistency student starts, on moons and digits: init=copy|teacher|random x weighting=ict|uniform.

Per data set, trains one ddpm teacher (MLP denoiser; moons 1,500 steps, digits 1,000 steps without EMA),
then distils it ``--cd-steps`` steps with each ``init`` and loss ``weighting`` (same seeds, same budget) and
prints (one line per row: mean, runs) the 1-step MMD^2 of each student's samples to held-out points (moons:
fresh points; digits: 300 test digits, RBF scales 2, 4, 8 as in the learn tests), with the teacher's own
1-step and 200-step DDIM, the untrained students and a standard normal for scale. ``--why`` adds the evidence
for the comparison: the teacher's x0 prediction error against the clean x0 along the grid, and each untrained
start's distance to the teacher's 200-step ODE endpoint at sigma_max (what a 1-step sample should become).

    OMP_NUM_THREADS=1 python benchmarks/consistency_warm_start.py --out /tmp/cd-bench --seeds 2 --why
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

import unigen
from unigen.data.toy import sample_toy
from unigen.metrics.mmd import mmd2

INITS = ("copy", "teacher", "random")
SETUPS: dict[str, dict[str, Any]] = {  # data set -> teacher run, distillation settings, reference
    "moons": {"teacher": {"steps": 1500, "batch_size": 128, "lr": 2e-3}, "cd": {"batch_size": 128, "lr": 2e-4}},
    "digits": {"teacher": {"steps": 1000, "batch_size": 64, "lr": 2e-3, "ema_decay": 0.0},
               "cd": {"batch_size": 64, "lr": 5e-4}},
}


def reference(name: str, n: int) -> tuple[torch.Tensor, Any]:
    if name == "moons":
        ref = sample_toy("moons", n, seed=123)
        return ref, lambda x: float(mmd2(x, ref))
    ref = unigen.load_dataset("digits", "test").x[:300]
    return ref, lambda x: float(mmd2(x, ref, scales=(2.0, 4.0, 8.0)))


@torch.no_grad()
def why(teacher_dir: Path, name: str, n: int) -> dict[str, Any]:
    """The teacher's x0 error along the grid, and each untrained start's distance to the ODE endpoint."""
    teacher = unigen.load_run(teacher_dir).model
    clean = sample_toy("moons", n, seed=5) if name == "moons" else unigen.load_dataset("digits").x[:n]
    torch.manual_seed(0)
    students = {k: unigen.build_model("consistency", teacher.data, {"teacher": str(teacher_dir), "init": k})
                for k in INITS}
    m = students["copy"]
    err = {}
    for j in range(1, len(m.grid_n), 4):
        i, s = torch.full((n,), j), m.grid_sigma[j]
        y = clean + s * torch.randn_like(clean)
        x0 = teacher.predict_x0(y * torch.rsqrt(1 + s**2), m.grid_n[i], m.teacher_eps(y, i))
        err[f"sigma={s:.3g}"] = float((x0 - clean).pow(2).mean())
    err["data mean (any sigma)"] = float((clean.mean(0) - clean).pow(2).mean())
    z = torch.randn_like(clean)
    last = len(m.grid_n) - 1
    y = z * (1 + m.grid_sigma[last] ** 2).sqrt()  # = x_T / sqrt(a_T) for the teacher's x_T = z
    endpoint = teacher.reverse(z.clone(), 200)
    one_step = {k: s.f(s.phi, y, torch.full((n,), last)) for k, s in students.items()}
    one_step = {k: x.clamp(-1, 1) if teacher.data.is_image else x for k, x in one_step.items()}  # as sample() does
    dist = {k: float((x - endpoint).pow(2).mean()) for k, x in one_step.items()}
    return {"teacher x0 MSE to clean x0": err, "untrained f(sigma_max) MSE to 200-step ODE endpoint": dist}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/cd-bench")
    p.add_argument("--data", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--cd-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--why", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    for name in args.data:
        setup, tdir = SETUPS[name], out / name / "teacher"
        torch.manual_seed(0)
        teacher = unigen.train("ddpm", name, out=tdir, net="mlp", hidden=256, depth=3, quiet=True, **setup["teacher"])
        ref, score = reference(name, args.n)
        n = len(ref)
        rows: dict[str, list[float]] = {"N(0, I) (scale)": [score(torch.randn(n, *ref.shape[1:]))],
                                        "teacher 1-step DDIM": [], "teacher 200-step DDIM": []}
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            rows["teacher 1-step DDIM"].append(score(teacher.model.sample(n, 1)))
            rows["teacher 200-step DDIM"].append(score(teacher.model.sample(n, 200)))
            for init in INITS:
                torch.manual_seed(seed)
                fresh = unigen.build_model("consistency", teacher.model.data, {"teacher": str(tdir), "init": init})
                rows.setdefault(f"init={init}, untrained", []).append(score(fresh.sample(n, 1)))
                for weighting in ("ict", "uniform"):
                    run = unigen.train("consistency", name, out=out / name / f"cd-{init}-{weighting}-{seed}",
                                       steps=args.cd_steps, seed=seed, teacher=str(tdir), init=init,
                                       weighting=weighting, quiet=True, **setup["cd"])
                    torch.manual_seed(seed)
                    rows.setdefault(f"init={init}, weighting={weighting}", []).append(score(run.model.sample(n, 1)))
        for k, v in rows.items():
            print(f"{name:7s} {k:34s} {sum(v) / len(v):.3f}  runs {[round(x, 4) for x in v]}", flush=True)
        if args.why:
            print(name, json.dumps(why(tdir, name, 300), indent=1), flush=True)


if __name__ == "__main__":
    main()
