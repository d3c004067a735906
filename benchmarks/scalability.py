"""Pixel-space against latent-space generative models for the same wall-clock budget.

    python benchmarks/scalability.py --minutes 4 --out bench-scalability

The comparison of the reference text, at this machine's scale: DDPM and flow matching trained on the
pixels of fashion-mnist (28x28) and latent diffusion (LDM) trained in the latent space of a VAE, each
for the same total wall-clock budget. The LDM's budget *includes* its autoencoder's training: the VAE
gets ``--ae-share`` of it, the latent DDPM the rest. Every arm runs through ``unigen bench`` (the
generic trainer, the same evaluator network, the same n and the same number of sampling steps), so the
figures are comparable with each other and with the bench tables.

Writes ``OUT/scalability.md`` and ``OUT/scalability.json``, plus each arm's own bench directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import unigen
from unigen_bench import bench


def _arm(out: Path, models: str, minutes: float, args: argparse.Namespace, sets: tuple[str, ...] = ()) -> dict:
    c = bench.BenchConfig(out=out, models=tuple(models.split(",")), data=args.data, minutes=minutes, n=args.n,
                          seed=args.seed, sample_steps=args.sample_steps, metric_seconds=args.metric_seconds,
                          sets=sets)
    return bench.run(c)


def _row(entry: dict, space: str, train_seconds: float, note: str = "") -> dict:
    m = entry.get("metrics", {})
    return {"model": entry["model"], "space": space, "status": entry["status"], "error": entry.get("error"),
            "train_seconds": round(train_seconds, 1), "steps": entry.get("train", {}).get("steps"),
            "steps_per_sec": entry.get("train_steps_per_sec"), "fid": m.get("fid"), "kid": m.get("kid"),
            "precision": m.get("precision"), "recall": m.get("recall"), "samples_per_sec": entry.get("samples_per_sec"),
            "sampling_steps": entry.get("sampling_steps"), "note": note}


def _fmt(v, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=4.0, help="wall-clock training budget of each arm")
    p.add_argument("--ae-share", type=float, default=0.4, help="share of the LDM budget spent on its VAE")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--n", type=int, default=1000, help="samples for FID/KID/precision/recall")
    p.add_argument("--sample-steps", type=int, default=50, help="sampling steps of every arm")
    p.add_argument("--metric-seconds", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench-scalability"))
    args = p.parse_args()
    if not 0 < args.ae_share < 1:
        print(f"--ae-share must be in (0, 1), got {args.ae_share}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    pixel = _arm(args.out / "pixel", "ddpm,flow-matching", args.minutes, args)
    ae = _arm(args.out / "autoencoder", "vae", args.minutes * args.ae_share, args)
    ae_entry = ae["models"][0]
    if ae_entry["status"] != "ok":
        print(f"the autoencoder run failed: {ae_entry['error']}", file=sys.stderr)
        return 1
    ae_run = args.out / "autoencoder" / "runs" / "vae"
    latent = _arm(args.out / "latent", "ldm", args.minutes * (1 - args.ae_share), args,
                  sets=(f"ldm.autoencoder={ae_run}",))
    shape = "x".join(map(str, unigen.load_dataset(args.data, "test").info.shape))
    rows = [_row(e, f"pixels ({shape})", e.get("train", {}).get("seconds", 0.0)) for e in pixel["models"]]
    ldm = latent["models"][0]
    ae_seconds = ae_entry["train"]["seconds"]
    rows.append(_row(ldm, "VAE latent", ae_seconds + ldm.get("train", {}).get("seconds", 0.0),
                     note=f"{ae_seconds:.0f} s VAE ({ae_entry['train']['steps']} steps, its own FID "
                          f"{_fmt(ae_entry['metrics'].get('fid'), 2)}) + latent DDPM"))
    ev = pixel.get("evaluator") or {}
    ref = pixel.get("reference") or {}
    lines = [
        f"# Pixel space against latent space on {args.data}: {args.minutes:g} min of training each", "",
        f"Command: `python benchmarks/scalability.py {' '.join(sys.argv[1:])}`", "",
        f"n={args.n} samples, {args.sample_steps} sampling steps for every model; features of the evaluator network "
        f"({ev.get('name', '?')}, test accuracy {_fmt(ev.get('test_accuracy'), 4)}); held-out data scores FID "
        f"{_fmt(ref.get('fid_test_vs_train'), 2)}. Torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"total {time.perf_counter() - started:.0f} s.", "",
        "| Model | Space | Training time (s) | Steps | Steps/sec | FID | KID (x1e3) | Precision | Recall | Samples/sec | Sampling steps | Note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['space']} | failed: {r['error']} | | | | | | | | | |")
            continue
        kid = None if r["kid"] is None else 1e3 * r["kid"]
        lines.append(f"| {r['model']} | {r['space']} | {r['train_seconds']:.0f} | {r['steps']} | "
                     f"{_fmt(r['steps_per_sec'], 2)} | {_fmt(r['fid'], 2)} | {_fmt(kid, 2)} | {_fmt(r['precision'], 3)} | "
                     f"{_fmt(r['recall'], 3)} | {_fmt(r['samples_per_sec'], 1)} | {r['sampling_steps']} | {r['note']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scalability.md").write_text("\n".join(lines) + "\n")
    (args.out / "scalability.json").write_text(json.dumps({"rows": rows, "minutes": args.minutes,
                                                           "ae_share": args.ae_share}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
