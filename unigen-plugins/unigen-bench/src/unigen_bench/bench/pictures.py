"""The loss on one batch and the pictures: latent PCA, loss chart."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from unigen import ops
from unigen.plugin import UnsupportedOperation

# --quick: ~25 models in under 10 minutes on 2 CPU cores.
QUICK = {"data": "digits", "minutes": 0.12, "n": 500, "max_sample_steps": 50, "metric_seconds": 10.0}


# -- the loss on one batch and the latent picture ---------------------------------------------------
def loss_on_batch(model: Any, batch: Any, seed: int, host: Any) -> dict[str, float]:
    """The model's training objective on ``batch``, one value per parameter group (gradients allowed:
    a gradient penalty needs them; nothing is stepped)."""
    out: dict[str, float] = {}
    groups = list(model.parameter_groups())
    for group in groups:
        torch.manual_seed(seed)
        value = ops.loss(model, batch, group if len(groups) > 1 else None, host=host)
        value = value[group] if isinstance(value, Mapping) else value
        out[group] = float(value.detach())
    model.zero_grad(set_to_none=True)
    return out


@torch.no_grad()
def latent_pca(model: Any, test: Any, path: Path, n: int = 1000) -> bool:
    """PCA scatter (2 components) of ``latent(x)`` for up to n test examples; False without a latent."""
    x = test.floats(slice(0, n)).to(model.device)
    try:
        z = model.latent(x).flatten(1).double().cpu()  # (N, d)
    except UnsupportedOperation:
        return False
    z = z - z.mean(0)
    if z.shape[1] >= 2:
        _, s, v = torch.linalg.svd(z, full_matrices=False)
        pc = z @ v[:2].T  # (N, 2)
        explained = (s[:2] ** 2 / (s**2).sum()).tolist()
    else:
        pc, explained = torch.cat([z, torch.zeros_like(z)], 1), [1.0, 0.0]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    labels = test.y[:n].numpy() if test.y is not None else None
    sc = ax.scatter(pc[:, 0].numpy(), pc[:, 1].numpy(), c=labels, cmap="tab10", s=6, alpha=0.8)
    if labels is not None:
        ax.legend(*sc.legend_elements(), title="label", fontsize=7, loc="best", markerscale=0.8)
    ax.set_title(f"{model.model_id}: PCA of latent(x), d={z.shape[1]}")
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def have_matplotlib() -> bool:
    """Whether matplotlib imports (the ``plots`` extra): the loss chart and latent scatters need it; the
    tables and the sample grids (PIL) do not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_chart(rows: list[dict[str, Any]], path: Path, dataset: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2), dpi=100)
    labels = [r["model"] if r["group"] == "main" else f"{r['model']} ({r['group']})" for r in rows]
    values = [r["loss"] for r in rows]
    ax.barh(range(len(rows)), values, color=["tab:red" if v < 0 else "tab:blue" for v in values])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    magnitudes = sorted(abs(v) for v in values if v)
    if magnitudes and magnitudes[-1] > 100 * magnitudes[len(magnitudes) // 2]:  # one huge loss hides the rest
        ax.set_xscale("symlog", linthresh=max(magnitudes[0], 1e-3))
    ax.set_xlabel("training loss on the same batch (each model's own objective)")
    ax.set_title(f"Unified loss comparison on {dataset}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


