"""A folder of 50,000 32x32x3 PNGs: indexing time, peak memory while training, and training steps/s
through the streaming path against the in-memory path on the same data.

    nice python benchmarks/data_stream.py --out bench-data-stream.json

It writes the PNGs into a temporary folder (``--folder DIR`` keeps them there for another run), then
runs each measurement in a fresh process so that the peak RSS (``ru_maxrss``) is that measurement's:

- ``index``: listing the folder and reading every header (the in-memory path), and the same with
  Pillow's ``verify()`` of every file (what the streaming path adds);
- ``memory`` and ``stream``: ``--steps`` training steps of ``--model`` with ``--batch-size`` through
  the generic trainer (one torch thread, the same seed, hence the same batches), after a warm-up of
  ``--warmup`` steps;
- ``memory_tiny`` and ``stream_tiny``: the same training (same model, batch size, steps) on a tiny
  folder of ``--baseline-n`` PNGs of the same shape, whose peak RSS is the Python + torch runtime, the
  model's training state and the activations, and almost no data.

What the data costs is ``data_cost = peak RSS (folder) - peak RSS (tiny folder)`` of the same path,
compared with the uint8 bytes the folder's training split adds over the tiny one's
(``data_cost_over_uint8``; 1.0 means the pixels are held once, as uint8, and nothing else grows with
the data). ``over_uint8_plus_model`` is ``(data_cost + model state) / (uint8 bytes + model state)``
with the model's training state counted as weights, gradients and two Adam moments
(4 x parameters x 4 bytes). The absolute peaks are reported too (``peak_rss_mb``).

The files are in the page cache after they are written, so the decode cost is measured, not the disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        import os

        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_folder(folder: Path, n: int, seed: int = 0) -> None:
    """n RGB PNGs, 32x32: a coloured square on a coloured background with a little noise."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = np.empty((32, 32, 3), np.uint8)
        a[:] = rng.integers(0, 256, 3, dtype=np.uint8)
        s = int(rng.integers(6, 18))
        r, c = rng.integers(0, 32 - s, 2)
        a[r : r + s, c : c + s] = rng.integers(0, 256, 3, dtype=np.uint8)
        a = np.clip(a.astype(np.int16) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"{i:05d}.png")


def child_index(folder: Path) -> dict:
    from unigen.data.folder import index_folder

    t0 = time.perf_counter()
    index = index_folder(folder, None, None)
    t1 = time.perf_counter()
    index_folder(folder, None, None, verify=True)
    t2 = time.perf_counter()
    return {"files": sum(len(f) for f, _ in index.splits.values()), "index_s": round(t1 - t0, 2),
            "index_with_verify_s": round(t2 - t1, 2)}


def child_train(folder: Path, stream: bool, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)
    import unigen

    base_mb = _current_rss_mb()
    t0 = time.perf_counter()
    data = unigen.load_dataset(str(folder), stream=stream)
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model = unigen.build_model(args.model, data)
    from unigen.trainer import Callback

    class Clock(Callback):  # the time once the warm-up (allocator, first batches, prefetch thread) is done
        start = 0.0

        def on_step_end(self, trainer, step):
            if step == args.warmup:
                Clock.start = time.perf_counter()

    config = unigen.TrainerConfig(steps=args.warmup + args.steps, batch_size=args.batch_size, log_every=10_000)
    unigen.Trainer(model, data, config, quiet=True, callbacks=[Clock()]).fit()
    steps_s = args.steps / (time.perf_counter() - Clock.start)
    n_params = sum(p.numel() for p in model.parameters())
    uint8_mb = len(data) * data.info.dim / 2**20
    state_mb = 4 * n_params * 4 / 2**20
    peak = _rss_mb()
    return {"stream": stream, "examples": len(data), "load_s": round(load_s, 2), "steps_per_s": round(steps_s, 2),
            "peak_rss_mb": round(peak, 1), "rss_after_import_mb": round(base_mb, 1),
            "peak_above_import_mb": round(peak - base_mb, 1), "uint8_mb": round(uint8_mb, 1),
            "model_state_mb": round(state_mb, 1)}


def _run_child(what: str, folder: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--folder", str(folder), "--model", args.model,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="PNGs to generate (default: 50,000)")
    p.add_argument("--folder", type=Path, help="where the PNGs are (made if missing; default: a temporary folder)")
    p.add_argument("--model", default="vae")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--baseline-n", type=int, default=512,
                   help="PNGs in the tiny folder whose training peak is subtracted (default: 512)")
    p.add_argument("--out", type=Path, help="also write the JSON report here")
    p.add_argument("--child", choices=["index", "memory", "stream", "memory_tiny", "stream_tiny"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = child_index(args.folder) if args.child == "index" else child_train(args.folder, args.child.startswith("stream"), args)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "pngs"
        report: dict = {"command": " ".join(sys.argv), "n": args.n, "model": args.model, "batch_size": args.batch_size}
        if not folder.exists() or len(list(folder.glob("*.png"))) < args.n:
            t0 = time.perf_counter()
            make_folder(folder, args.n)
            report["generate_s"] = round(time.perf_counter() - t0, 1)
        tiny = Path(tmp) / "tiny"
        make_folder(tiny, args.baseline_n, seed=1)
        report["index"] = _run_child("index", folder, args)
        for path in ("memory", "stream"):
            full, small = _run_child(path, folder, args), _run_child(path + "_tiny", tiny, args)
            cost = full["peak_rss_mb"] - small["peak_rss_mb"]
            uint8 = full["uint8_mb"] - small["uint8_mb"]
            state = full["model_state_mb"]
            full["tiny"] = {k: small[k] for k in ("examples", "peak_rss_mb", "uint8_mb")}
            full["data_cost_mb"] = round(cost, 1)
            full["data_cost_over_uint8"] = round(cost / uint8, 2)
            full["over_uint8_plus_model"] = round((cost + state) / (uint8 + state), 2)
            report[path] = full
        report["stream_over_memory_steps_per_s"] = round(report["stream"]["steps_per_s"] / report["memory"]["steps_per_s"], 3)
        text = json.dumps(report, indent=2)
        if args.out:
            args.out.write_text(text + "\n")
        print(text)


if __name__ == "__main__":
    main()
