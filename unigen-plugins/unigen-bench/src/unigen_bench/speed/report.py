"""The speed report as text."""

from __future__ import annotations

from typing import Any


# -- text output -------------------------------------------------------------------------------------------
def _fmt(s: Any, unit: str = "") -> str:
    if not isinstance(s, dict) or s.get("median") is None:
        return "-"
    return f"{s['median']:.4g}{unit} [{s['min']:.3g}..{s['max']:.3g}]"


def format_report(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [f"unigen speed  {m['time']}  torch {m['torch']}  device {m['device']}  threads {m['threads']}  "
             f"cpus {m['cpus']}  load {m['loadavg']} -> {m.get('loadavg_end')}  malloc {m['malloc']}"
             f"{'  (quick)' if m['quick'] else ''}", "", "median [min..max] of repeats; ratios taken pair by pair"]
    to = r.get("trainer_overhead", {})
    if to:
        lines += ["", "trainer overhead (trainer / bare loop, same model, data and batches; target <= 1.03)"]
    if "error" in to:
        lines.append(f"  error: {to['error']}")
    for label in ("small", "conv"):
        row = to.get(label)
        if not row:
            continue
        if "error" in row:
            lines.append(f"  {label:6s} {row.get('model')}: error: {row['error']}")
            continue
        lines.append(f"  {label:6s} {row['model']} on {row['data']}, batch {row['batch_size']}: ratio "
                     f"{_fmt(row['ratio'])} {'ok' if row['ok'] else 'ABOVE TARGET'} (CPU time "
                     f"{_fmt(row.get('cpu_ratio'))});  trainer - bare "
                     f"{_fmt(row['extra_us_per_step'], ' us')};  trainer "
                     f"{_fmt(row['trainer_ms_per_step'], ' ms')}  bare {_fmt(row['bare_ms_per_step'], ' ms')} per step")
    sm = r.get("samplers", {})
    if "core" in sm or "models" in sm:
        lines += ["", f"sampler cost per step, zero network, batch {tuple(sm.get('shape', ()))}"]
        for group in ("core", "models"):
            for k, row in sm.get(group, {}).items():
                if "error" in row:
                    lines.append(f"  {group:6s} {k:24s} error: {row['error']}")
                else:
                    vs = f"  x{row['vs_diffusers_ddim']} of diffusers DDIM" if "vs_diffusers_ddim" in row else ""
                    lines.append(f"  {group:6s} {k:24s} {_fmt(row['step_ms'], ' ms')}  ({row['calls']} calls for "
                                 f"{row['steps']} steps){vs}")
        d = sm.get("diffusers", {})
        if "error" in d:
            lines.append(f"  diffusers: {d['error']}")
        for k, row in d.items():
            if isinstance(row, dict) and "step_ms" in row:
                lines.append(f"  diffusers {d['version']} {k}.step: {_fmt(row['step_ms'], ' ms')}")
        if "noise_draw" in sm:
            lines.append(f"  drawing z ~ N(0, I) alone (torch's generator; the floor of a step that draws noise): "
                         f"{_fmt(sm['noise_draw']['step_ms'], ' ms')}")
    sps = r.get("samples_per_sec", {})
    if len(sps) > 1:
        lines += ["", f"samples/sec at each model's default steps ({sps.get('n_per_call')} per call, untrained weights)"]
        for k, row in sps.items():
            if not isinstance(row, dict):
                continue
            if "samples_per_sec" in row:
                lines.append(f"  {k:24s} {row['family']:14s} steps {str(row['steps']):5s} "
                             f"{_fmt(row['samples_per_sec'])} on {row['data']}")
            elif "unsupported" in row or "error" in row:
                lines.append(f"  {k:24s} {row.get('family', ''):14s} {row.get('unsupported') or 'error: ' + row['error']}")
    comp = r.get("compile", {})
    if "skipped" in comp:
        lines += ["", f"compile: skipped ({comp['skipped']})"]
    elif comp:
        lines += ["", "torch.compile speedup (eager time / compiled time; >1 is a gain)"]
        for fam, row in comp.items():
            if not isinstance(row, dict) or "model" not in row:
                continue
            tr, sa = row.get("train", {}), row.get("sample", {})
            lines.append(f"  {fam:14s} {row['model']:20s} train {tr.get('speedup', tr.get('error', '-'))}  "
                         f"sample {sa.get('speedup', sa.get('error', sa.get('unsupported', '-')))}")
    mem = r.get("memory", {})
    if mem:
        lines.append("")
        for block, title in ((mem, f"{mem.get('command', '')} ({mem.get('model', '')})"),
                             (mem.get("fid"), (mem.get("fid") or {}).get("command", ""))):
            if not block:
                continue
            lines.append(f"memory: {title}")
            for row in block.get("runs", []):
                output = f"  output {row.get('output_mb', '-')} MiB" if block is mem else ""
                lines.append(f"  n={row['n']:6d}  peak RSS {row['peak_rss_mb']} MiB{output}"
                             f"{'  error: ' + row['error'] if row.get('error') else ''}")
            if "error" in block:
                lines.append(f"  error: {block['error']}")
            if "rss_growth_mb" in block:
                more = f" for {block['output_growth_mb']} MiB more output" if "output_growth_mb" in block else ""
                lines.append(f"  peak RSS growth {block['rss_growth_mb']} MiB{more}")
    mal = r.get("malloc", {})
    if mal:
        lines += ["", "malloc (subprocess probes; speedup = system time / setting time, paired by round)"]
        if "error" in mal:
            lines.append(f"  error: {mal['error']}")
        for key in ("sample_s", "train_s"):
            row = mal.get(key)
            if row:
                lines.append(f"  {key:9s} system {_fmt(row['system'], ' s')}  env {_fmt(row['env'], ' s')}  "
                             f"mallopt {_fmt(row['mallopt'], ' s')}  speedup env x{row['speedup_env']} "
                             f"mallopt x{row['speedup_mallopt']}")
    sc = r.get("scaling", {})
    if sc:
        lines += ["", "scaling (least squares)"]
        tr, sa = sc.get("train", {}), sc.get("sample", {})
        if "fit_ms" in tr:
            lines.append(f"  train {tr['model']}: ms/step {tr['ms_per_step']} at batch {tr['batch_size']}: "
                         f"{tr['fit_ms']['intercept']} + {tr['fit_ms']['slope']} * B ms (R^2 {tr['fit_ms']['r2']})")
        elif tr:
            lines.append(f"  train: error: {tr.get('error')}")
        if "fit_ms" in sa:
            lines.append(f"  sample {sa['model']} (n={sa['n']}): s {sa['seconds']} at steps {sa['steps']}: "
                         f"{sa['fit_ms']['intercept']} + {sa['fit_ms']['slope']} * steps ms (R^2 {sa['fit_ms']['r2']})")
        elif sa:
            lines.append(f"  sample: error: {sa.get('error')}")
    lines += ["", f"total {m.get('seconds')} s"]
    return "\n".join(lines)


