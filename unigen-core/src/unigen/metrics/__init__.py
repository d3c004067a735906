"""Metrics for ``unigen eval``, registered through ``unigen_register_metrics``.

Each metric is ``compute(ctx) -> dict`` over an :class:`EvalContext`. A metric a model cannot
support reports ``None`` with the reason rather than failing.

Built in: ``nll`` (bits/dim, :mod:`.nll`), ``fid``, ``kid``, ``is``, ``pr`` (sample quality on
evaluator features, :mod:`.quality`, :mod:`.scores`, :mod:`.evaluator`); ``throughput`` comes with
unigen-bench. The sample-based metrics share one set of samples through ``ctx.cache``.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import torch

from ..data import Dataset
from ..data.sources import dataset_spec
from ..errors import UnsupportedOperation
from ..model import GenerativeModel
from ..registry import MetricSpec
from . import quality
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
    # The sample-based metrics (keyword arguments):
    steps: int | None = None  # sampling steps (None: the model's default)
    evaluator: str | None = None  # a TorchScript feature extractor; None: the dataset's evaluator CNN
    evaluator_seed: int = 0  # which cached evaluator CNN
    log: Any = None  # callable(str) for progress messages (e.g. training the evaluator), or None
    cache: dict[Any, Any] = attrs.field(factory=dict)  # samples and features shared between metrics
    # time.perf_counter() after which NLL and sampling stop taking new batches (None: no limit)
    deadline: float | None = None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    @property
    def dataset_name(self) -> str:
        return self.record["dataset"]

    def split(self, name: str) -> Dataset:
        if name not in self._splits:
            spec = dataset_spec(self.dataset_name, self.host)
            self._splits[name] = spec.load(name, self.data_dir or self.record.get("data_dir"))
        return self._splits[name]


@torch.no_grad()
def nll(ctx: EvalContext) -> dict[str, Any]:
    """NLL in bits/dim on (up to n examples of) the test split, labelled exact/bound/estimate."""
    model = ctx.model
    kind = model.logprob_kind  # the instance's: it may depend on its config
    test = ctx.split("test")
    g = torch.Generator().manual_seed(ctx.seed)
    torch.manual_seed(ctx.seed)
    n = min(ctx.n, len(test))
    values = []
    try:
        for start in range(0, n, ctx.batch_size):
            x = test.floats(slice(start, min(n, start + ctx.batch_size))).to(model.device)
            if not model.logprob_discrete:
                x = dequantize(x, test.info.levels, g.manual_seed(ctx.seed + start)).to(model.device)
            logp = ctx.host.call("unigen_logprob", model=model, x=x)  # the hook, as unigen.ops.logprob
            values.append(bits_per_dim(logp, test.info, model.logprob_discrete).cpu())
            if ctx.out_of_time():  # report on the examples done so far (nll_n says how many)
                break
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
    MetricSpec(id="fid", compute=quality.fid, description="Frechet distance on evaluator features (Heusel et al. 2017)"),
    MetricSpec(id="kid", compute=quality.kid, description="kernel inception distance, unbiased (Binkowski et al. 2018)"),
    MetricSpec(id="is", compute=quality.inception, description="Inception Score on evaluator class probabilities"),
    MetricSpec(id="pr", compute=quality.precision_recall,
               description="precision and recall, k-NN manifolds (Kynkaanniemi et al. 2019)"),
]

__all__ = ["EvalContext", "bits_per_dim", "dequantize", "BUILTIN", "nll"]
