"""Metrics for ``unigen eval``, registered through ``unigen_register_metrics``.

Each metric is ``compute(ctx) -> dict`` over an :class:`EvalContext`. A metric a model cannot
support reports ``None`` with the reason rather than failing.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from .. import ops
from ..data import Dataset
from ..errors import UnsupportedOperation
from ..model import GenerativeModel
from ..registry import MetricSpec
from .nll import bits_per_dim, dequantize


@attrs.define
class EvalContext:
    """What a metric needs: the model (in eval mode), its run record and the data."""

    model: GenerativeModel
    record: dict[str, Any]
    host: Any
    n: int = 1000  # examples (or samples) to evaluate
    batch_size: int = 250
    seed: int = 0
    data_dir: str | None = None
    _splits: dict[str, Dataset] = attrs.field(factory=dict)

    @property
    def dataset_name(self) -> str:
        return self.record["dataset"]

    def split(self, name: str) -> Dataset:
        if name not in self._splits:
            self._splits[name] = self.host.datasets[self.dataset_name].load(name, self.data_dir or self.record.get("data_dir"))
        return self._splits[name]


@torch.no_grad()
def nll(ctx: EvalContext) -> dict[str, Any]:
    """NLL in bits/dim on (up to n examples of) the test split, labelled exact/bound/estimate."""
    model = ctx.model
    kind = type(model).logprob_kind
    test = ctx.split("test")
    g = torch.Generator().manual_seed(ctx.seed)
    torch.manual_seed(ctx.seed)
    n = min(ctx.n, len(test))
    values = []
    try:
        for start in range(0, n, ctx.batch_size):
            x = test.x[start : min(n, start + ctx.batch_size)].to(model.device)
            if not type(model).logprob_discrete:
                x = dequantize(x, test.info.levels, g.manual_seed(ctx.seed + start)).to(model.device)
            logp = ops.logprob(model, x, host=ctx.host)
            values.append(bits_per_dim(logp, test.info, type(model).logprob_discrete).cpu())
    except UnsupportedOperation as exc:
        return {"nll_bits_per_dim": None, "nll_kind": "none", "nll_reason": str(exc)}
    bpd = torch.cat(values)
    return {
        "nll_bits_per_dim": float(bpd.mean()),
        "nll_bits_per_dim_stderr": float(bpd.std() / len(bpd) ** 0.5) if len(bpd) > 1 else 0.0,
        "nll_kind": kind,
        "nll_n": len(bpd),
        "nll_uniform_bits_per_dim": _uniform(test),
    }


def _uniform(data: Dataset) -> float | None:
    import math

    return None if data.info.levels is None else math.log2(data.info.levels)


BUILTIN = [
    MetricSpec(id="nll", compute=nll, description="negative log-likelihood, bits/dim (exact, bound or estimate)"),
]

__all__ = ["EvalContext", "bits_per_dim", "dequantize", "BUILTIN", "nll"]
