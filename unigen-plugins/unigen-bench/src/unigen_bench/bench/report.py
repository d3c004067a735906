"""The bench report as markdown."""

from __future__ import annotations

import math
from typing import Any

# --quick: ~25 models in under 10 minutes on 2 CPU cores.
QUICK = {"data": "digits", "minutes": 0.12, "n": 500, "max_sample_steps": 50, "metric_seconds": 10.0}


# -- the report -----------------------------------------------------------------------------------
def _fmt(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if digits == 0:
        return f"{v:.0f}"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3g}"
    return f"{v:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    b = results["budget"]
    budget = f"{b['steps']} training steps" if b["minutes"] is None else f"{b['minutes']:g} min of training"
    ev = results.get("evaluator") or {}
    lines = [f"# unigen bench: {results['dataset']}", ""]
    if results.get("command"):
        lines += [f"Command: `{results['command']}`", ""]
    lines += [f"Budget: {budget} per model; metrics on n={results['n']} samples against n training examples; "
              f"seed {results['seed']}; {results['machine']['device']}, torch {results['machine']['torch']}, "
              f"{results['machine']['threads']} threads; total {results['seconds']:.0f} s.", ""]
    if ev:
        lines += [f"Scores are on the features of the evaluator network ({ev['name']}, test accuracy "
                  f"{_fmt(ev['test_accuracy'], 4)}), not Inception: compare them within this table only."]
    ref = results.get("reference")
    if ref:
        lines += [f"Held-out data scores FID {_fmt(ref['fid_test_vs_train'], 2)} and IS {_fmt(ref['is_test'], 2)} "
                  f"(n={ref['n_test']}): the floor of FID and the ceiling of IS here."]
    lines += ["", "| Model | Family | NLL bits/dim (exact/bound/estimate) | FID | IS | Precision | Recall | Samples/sec | Sampling steps |",
              "|---|---|---|---|---|---|---|---|---|"]
    ok = [e for e in results["models"] if e["status"] == "ok"]
    ref_n = max((e["metrics"].get("nll_n") or 0 for e in ok), default=0)
    for e in results["models"]:
        if e["status"] != "ok":
            lines.append(f"| {e['model']} | {e['family']} | failed: {e['error'].replace('|', '/')} | | | | | | |")
            continue
        m = e["metrics"]
        name = e["model"] + (" (example config)" if e.get("config") == "example" else "")
        nll = (f"{_fmt(m['nll_bits_per_dim'], 3)} ({m['nll_kind']})" if m.get("nll_bits_per_dim") is not None
               else "n/a (no likelihood)" if m.get("nll_kind") == "none" else "—")
        fid = _fmt(m.get("fid"), 2)
        if m.get("fid") is not None and m.get("sample_n", results["n"]) < results["n"]:
            fid += f" (n={m['sample_n']})"
        if m.get("nll_bits_per_dim") is not None and ref_n and m.get("nll_n", ref_n) < ref_n:
            nll += f" (n={m['nll_n']})"
        lines.append(f"| {name} | {e['family']} | {nll} | {fid} | {_fmt(m.get('is'), 2)} | "
                     f"{_fmt(m.get('precision'), 3)} | {_fmt(m.get('recall'), 3)} | {_fmt(e.get('samples_per_sec'), 0)} | "
                     f"{e['sampling_steps']} |")
    lines += ["", "## Training and KID", "", "| Model | Steps | Train seconds | Train steps/sec | Final loss | KID (x1e3) |",
              "|---|---|---|---|---|---|"]
    for e in ok:
        t, m = e["train"], e["metrics"]
        loss = ", ".join(f"{k} {v:.4g}" for k, v in t["final_loss"].items())
        kid = None if m.get("kid") is None else 1e3 * m["kid"]
        lines.append(f"| {e['model']} | {t['steps']} | {t['seconds']:.1f} | {_fmt(e.get('train_steps_per_sec'), 1)} | "
                     f"{loss} | {_fmt(kid, 2)} |")
    if results["loss_comparison"]:
        lines += ["", "## Unified loss comparison", "",
                  "Every model's own training objective on the same batch of 128 test examples, sorted "
                  "(objectives differ between families: this shows scale and sign, not quality).", ""]
        lines += [f"![loss comparison]({results['loss_chart']})", ""] if results.get("loss_chart") else []
        lines += ["| Model | Group | Loss |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['group']} | {r['loss']:.4g} |" for r in results["loss_comparison"]]
    pictures = [e for e in ok if e.get("samples_png") or e.get("latent_png")]
    if pictures:
        lines += ["", "## Samples and latent spaces", ""]
        for e in pictures:
            row = [f"![{e['model']} samples]({e['samples_png']})"] if e.get("samples_png") else []
            row += [f"![{e['model']} latent PCA]({e['latent_png']})"] if e.get("latent_png") else []
            lines += [f"**{e['model']}**", "", " ".join(row), ""]
    notes = [f"- {e['model']}: trained with its example config (the small one of the contract tests), because "
             f"the default config failed: {e['config_reason']}" for e in ok if e.get("config") == "example"]
    notes += [f"- {e['model']}: {k[:-7]} not available: {m}" for e in ok for k, m in e["metrics"].items()
              if k.endswith("_reason")]
    if notes:
        lines += ["", "## Notes", ""] + notes
    return "\n".join(lines).rstrip() + "\n"
