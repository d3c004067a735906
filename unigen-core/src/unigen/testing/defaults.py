"""Do a model's defaults learn on the data a user brings? :func:`learns_with_defaults` trains a model
the way ``unigen train ID --data D --steps N`` does (:func:`unigen.train`: the config's defaults and
the instance's ``trainer_defaults``, nothing else), and measures the run at step 0 and at step N the
same way, so that a model is compared with its untrained self.

The measure follows the instance's capabilities:

- a sampler: the squared MMD (Gretton et al. 2012, unbiased) between ``n`` samples and ``n`` held-out
  examples (pixels for images), with an RBF kernel whose bandwidths are fixed by the held-out data
  alone: k(a, b) = sum_{s in (h/2, h, 2h)} exp(-|a - b|^2 / (2 s^2)), h the median distance between
  held-out examples (the median heuristic). Lower is better; samples that are not finite score inf.
- a model that does not sample (a JEPA): the ``probe`` metric (linear-probe accuracy on its frozen
  embeddings, on up to ``PROBE_TEST`` examples of the test split). Higher is better.

The runs a model builds on (``needs_runs``: a consistency model's teacher, an LDM's autoencoder) are
trained first the same way, for ``helper_steps`` steps (default: ``steps``), with pure defaults and the
settings the model's recipe gives them (``needs_settings``: an LDM's autoencoder has Rombach et al.'s KL
weight), as a user following the model's docs would train the teacher before distilling it; only those
config fields point at them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import torch

from ..api import load_dataset
from ..errors import UnsupportedOperation
from ..metrics.mmd import mmd2
from ..plugins import Host, default_host
from ..training import train

PROBE_TEST = 2000


@attrs.frozen
class Outcome:
    """One model on one dataset: the measure at step 0 and after ``steps`` steps of pure defaults."""

    model: str
    data: str
    measure: str  # "mmd2" (lower is better) or "probe" (higher is better)
    untrained: float
    trained: float
    steps: int

    @property
    def improvement(self) -> float:
        """How much better the trained run is: untrained/trained for MMD^2, trained-untrained for the probe."""
        if self.measure == "probe":
            return self.trained - self.untrained
        if not math.isfinite(self.trained):
            return 0.0
        return math.inf if not math.isfinite(self.untrained) or self.trained <= 0 else self.untrained / self.trained

    def __str__(self) -> str:
        return f"{self.model} on {self.data}, {self.measure}: {self.untrained:.4g} untrained -> {self.trained:.4g} after {self.steps} steps"


def median_bandwidth(y: torch.Tensor) -> float:
    """The median distance between the examples of ``y`` (N, *D): the kernel scale h."""
    d = torch.cdist(y.flatten(1).double(), y.flatten(1).double())
    return float(d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)].median())


def sample_mmd2(x: torch.Tensor, y: torch.Tensor, h: float) -> float:
    """MMD^2 between samples ``x`` and held-out ``y`` with bandwidths (h/2, h, 2h); inf if x is not finite."""
    if not torch.isfinite(x).all():
        return math.inf
    return float(mmd2(x.flatten(1), y.flatten(1), scales=(h / 2, h, 2 * h)))


def _measure(run: Any, held_out: torch.Tensor, h: float, n: int, host: Host) -> tuple[str, float]:
    try:
        with torch.no_grad():
            x = run.sample(n, seed=0, host=host)
    except UnsupportedOperation:
        result = run.eval("probe", n=PROBE_TEST, host=host)
        return "probe", float(result["probe_accuracy"])
    return "mmd2", sample_mmd2(x.float(), held_out, h)


def _helper_runs(model: str, data: str, workdir: Path, steps: int, host: Host) -> list[str]:
    """Train every run ``model`` builds on (pure defaults and its ``needs_settings``); the ``model.FIELD=PATH``
    settings naming them."""
    sets = []
    model_cls = host.models[model].model_cls
    for field, needed in model_cls.needs_runs.items():
        run = workdir / field
        if not (run / "run.json").exists():
            train(needed, data, out=run, sets=_helper_runs(needed, data, workdir / f".{field}", steps, host),
                  steps=steps, quiet=True, host=host, **model_cls.needs_settings.get(field, {}))
        sets.append(f"model.{field}={run}")
    return sets


def learns_with_defaults(model: str, data: str, workdir: str | Path, *, steps: int, n: int = 500,
                         helper_steps: int | None = None, host: Host | None = None) -> Outcome:
    """Train ``model`` on dataset ``data`` for ``steps`` steps with pure defaults (as ``unigen train``
    would) and measure the run before and after; see the module docstring."""
    host = host or default_host()
    workdir = Path(workdir)
    sets = _helper_runs(model, data, workdir / "helpers", helper_steps or steps, host)
    test = load_dataset(data, "test", host=host)
    held_out = test.x[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:n]].float()
    h = median_bandwidth(held_out)
    scores = []
    for name, k in (("untrained", 0), ("trained", steps)):
        run = train(model, data, out=workdir / name, sets=sets, steps=k, quiet=True, host=host)
        run.model.eval()
        scores.append(_measure(run, held_out, h, n, host))
    (kind, before), (_, after) = scores
    return Outcome(model=model, data=data, measure=kind, untrained=before, trained=after, steps=steps)
