"""Sections ``memory`` (peak RSS of subprocesses) and ``malloc`` (glibc settings side by side)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from unigen import Trainer, default_host, load_dataset, malloc, ops
from unigen.plugin import DataInfo

from .overhead import overhead_config
from .timing import Context, _build, patch_zero_networks, pick_overhead_models, stats

# -- section: memory --------------------------------------------------------------------------------------
_LAUNCHER = """import json, os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read().decode()[-500:]
_, status, usage = os.wait4(p.pid, 0)
print(json.dumps([usage.ru_maxrss, os.waitstatus_to_exitcode(status), err]))
"""


def _peak_rss_mb(cmd: list[str]) -> tuple[float, int, str]:
    """Run ``cmd``; its own peak RSS in MiB (wait4's figure for that process alone). It is started from
    a small launcher process: Linux carries the RSS high-water mark of the process that forks into the
    child's figure, and this process is large by now."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], capture_output=True, text=True)
    kb, code, err = json.loads(done.stdout.strip().splitlines()[-1])
    return kb / 1024, code, err


def section_memory(ctx: "Context") -> dict[str, Any]:
    model_id = pick_overhead_models(ctx.host, ctx.overhead_model)
    if model_id is None:
        return {"error": "no model to sample"}
    tmp = Path(tempfile.mkdtemp(prefix="unigen-speed-mem-"))
    run = tmp / "run"
    cli = [sys.executable, "-m", "unigen"]
    done = subprocess.run([*cli, "train", model_id, "--data", "digits", "--steps", "2", "--out", str(run), "--quiet"],
                          capture_output=True, text=True)
    if done.returncode:
        return {"model": model_id, "error": done.stderr.strip()[-300:]}
    out: dict[str, Any] = {"model": model_id, "command": "unigen sample RUN --n N --out x.npy", "chunk": 500}
    sizes = (1000, 5000) if ctx.quick else (1000, 10000)
    rows = []
    for n in sizes:
        ctx.log(f"memory: unigen sample --n {n}")
        path = tmp / f"x{n}.npy"
        rss, code, err = _peak_rss_mb([*cli, "sample", str(run), "--n", str(n), "--out", str(path)])
        row: dict[str, Any] = {"n": n, "peak_rss_mb": round(rss, 1), "exit": code}
        if code:
            row["error"] = err.strip()
        else:
            import numpy as np

            arr = np.load(path, mmap_mode="r")
            row["output_mb"] = round(arr.nbytes / 2**20, 2)
            row["shape"] = list(arr.shape)
            del arr
        rows.append(row)
    out["runs"] = rows
    if all("peak_rss_mb" in r and not r.get("error") for r in rows):
        growth = rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
        out["rss_growth_mb"] = round(growth, 1)
        out["output_growth_mb"] = round(rows[1]["output_mb"] - rows[0]["output_mb"], 2)
    # FID over N generated samples: generated and featurised in chunks, so only the (N, F) feature matrix
    # grows with N (the evaluator is trained and cached by the first run, before the measured ones)
    fid_cmd = [*cli, "eval", str(run), "--metrics", "fid", "--json", "--n"]
    subprocess.run([*fid_cmd, "200"], capture_output=True, text=True)
    fid_rows: list[dict[str, Any]] = []
    for n in sizes:
        ctx.log(f"memory: unigen eval --metrics fid --n {n}")
        rss, code, err = _peak_rss_mb([*fid_cmd, str(n)])
        fid_rows.append({"n": n, "peak_rss_mb": round(rss, 1), "exit": code, **({"error": err.strip()} if code else {})})
    out["fid"] = {"command": "unigen eval RUN --metrics fid --n N --json", "runs": fid_rows}
    if not any(r.get("error") for r in fid_rows):
        out["fid"]["rss_growth_mb"] = round(fid_rows[1]["peak_rss_mb"] - fid_rows[0]["peak_rss_mb"], 1)
    return out


# -- section: malloc ---------------------------------------------------------------------------------------
def _probe_model(host: Any) -> str | None:
    """The first installed multi-step image model whose number of network calls grows with steps."""
    info = DataInfo(name="probe", shape=(1, 8, 8), kind="image", levels=17)
    for spec in host.models.values():
        cls = spec.model_cls
        if not cls.default_steps or cls.default_steps <= 1 or "image" not in cls.data_kinds:
            continue
        try:
            model = _build(spec.id, info, host, torch.device("cpu")).eval()
            stamps: list[float] = []
            patch_zero_networks(model, stamps)
            calls = []
            for k in (4, 8):
                stamps.clear()
                with torch.no_grad():
                    ops.sample(model, 2, k, host=host)
                calls.append(len(stamps))
            if calls[1] >= 2 * calls[0] - 1 and calls[0] >= 4:
                return spec.id
        except Exception:
            continue
    return None


def probe(mode: str, model_id: str, conv_id: str) -> dict[str, float]:
    """The workload of the malloc comparison, run in a fresh process: sampling a conv denoiser on
    28x28 (batch 64, 10 steps) and training a conv model on digits (batch 128)."""
    if mode == "mallopt":
        malloc.tune(force=True)
    torch.set_num_threads(1)
    host = default_host()
    ctx_dev = torch.device("cpu")
    info = DataInfo(name="probe-28x28", shape=(1, 28, 28), kind="image", levels=256)
    torch.manual_seed(0)
    model = _build(model_id, info, host, ctx_dev).eval()

    def draw() -> float:
        started = time.perf_counter()
        with torch.no_grad():
            ops.sample(model, 64, 10, host=host)
        return time.perf_counter() - started

    draw()
    sample_s = statistics.median(draw() for _ in range(3))
    digits = load_dataset("digits", host=host)
    conv = _build(conv_id, digits.info, host, ctx_dev)

    cfg = overhead_config(conv, 128, 30, "cpu")
    Trainer(conv, digits, cfg, quiet=True, host=host).fit()

    def train() -> float:
        t = Trainer(conv, digits, cfg, quiet=True, host=host)
        started = time.perf_counter()
        t.fit()
        return time.perf_counter() - started

    train_s = statistics.median(train() for _ in range(3))
    return {"sample_s": sample_s, "train_s": train_s}


def section_malloc(ctx: "Context") -> dict[str, Any]:
    model_id = _probe_model(ctx.host)
    conv_id = pick_overhead_models(ctx.host, ctx.overhead_model)
    if model_id is None or conv_id is None:
        return {"error": "no multi-step image model or conv model installed"}
    base = {k: v for k, v in os.environ.items() if k not in malloc.ENV_VARS and k != malloc.ENV_SWITCH}
    modes = {"system": base, "env": {**base, **malloc.ENV_VARS}, "mallopt": base}
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    rounds = 2 if ctx.quick else 4
    for i in range(rounds):
        order = list(modes) if i % 2 == 0 else list(reversed(modes))
        for mode in order:
            ctx.log(f"malloc probe {i + 1}/{rounds}: {mode}")
            done = subprocess.run([sys.executable, "-m", "unigen_bench.speed", "--probe", mode, model_id, conv_id],
                                  capture_output=True, text=True, env=modes[mode])
            if done.returncode:
                return {"error": f"probe {mode} failed: {done.stderr.strip()[-300:]}"}
            results[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"sampled": model_id, "trained": conv_id, "rounds": rounds,
                           "settings": malloc.ENV_VARS, "cli_default": "mallopt (unigen.malloc.tune)"}
    for key in ("sample_s", "train_s"):
        row: dict[str, Any] = {m: stats([r[key] for r in results[m]]) for m in modes}
        for m in ("env", "mallopt"):
            # paired by round: rounds ran the three modes back to back
            row[f"speedup_{m}"] = round(statistics.median(
                s[key] / r[key] for s, r in zip(results["system"], results[m])), 3)
        out[key] = row
    return out


