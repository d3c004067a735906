"""The linear probe: how linearly separable the classes are in a model's frozen embeddings.

The evaluation of self-supervised encoders (I-JEPA, Assran et al. 2023, Sec. 5): a multinomial
logistic regression (scikit-learn, L-BFGS, features standardised on the train split) is fitted on
``model.latent(x)`` of up to ``PROBE_TRAIN`` train examples and scored on up to ``n`` test
examples. The same probe on the raw pixels is reported beside it, so a representation is judged
against doing nothing.

Collapse (every image mapped to nearly the same embedding, the failure mode joint-embedding methods
guard against with the EMA target and the predictor) is detected from the spread of the test
embeddings: ``embedding_std`` is the mean over dimensions of the standard deviation across examples,
divided by the root-mean-square embedding value; ``collapsed`` is true when it is below
``COLLAPSE_RATIO``. ``embedding_rank`` counts singular values of the centred embeddings above 1% of
the largest (a dimensional collapse shows as a small rank).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unigen.plugin import UnsupportedOperation

PROBE_TRAIN = 10_000
COLLAPSE_RATIO = 1e-3


@torch.no_grad()
def embed(model: Any, x: torch.Tensor, batch_size: int = 250) -> np.ndarray:
    """``model.latent`` over x in batches, as a float64 array (N, d)."""
    out = [model.latent(x[i : i + batch_size].to(model.device)).flatten(1).double().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Test accuracy of a logistic-regression probe trained on (train_x, train_y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def collapse_stats(z: np.ndarray) -> dict[str, Any]:
    """Spread of embeddings z (N, d): relative std across examples, rank, and the collapse verdict."""
    rms = float(np.sqrt(np.mean(z**2))) + 1e-12
    ratio = float(z.std(0).mean()) / rms
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    rank = int((s > 1e-2 * s[0]).sum()) if s.size and s[0] > 0 else 0
    return {"embedding_std": ratio, "embedding_rank": rank, "collapsed": bool(ratio < COLLAPSE_RATIO)}


def probe(ctx: Any) -> dict[str, Any]:
    """The ``probe`` metric over an :class:`unigen.metrics.EvalContext`."""
    model = ctx.model
    train, test = ctx.split("train"), ctx.split("test")
    if train.y is None or test.y is None:
        return {"probe_accuracy": None, "probe_reason": f"dataset {ctx.dataset_name!r} has no labels"}
    g = torch.Generator().manual_seed(ctx.seed)
    tr = torch.randperm(len(train), generator=g)[: min(len(train), PROBE_TRAIN)]
    te = torch.arange(min(len(test), ctx.n))
    try:
        z_train, z_test = embed(model, train.x[tr], ctx.batch_size), embed(model, test.x[te], ctx.batch_size)
    except UnsupportedOperation as exc:
        return {"probe_accuracy": None, "probe_reason": str(exc)}
    y_train, y_test = train.y[tr].numpy(), test.y[te].numpy()
    pixels = fit_probe(train.x[tr].flatten(1).double().numpy(), y_train, test.x[te].flatten(1).double().numpy(), y_test)
    return {
        "probe_accuracy": fit_probe(z_train, y_train, z_test, y_test),
        "probe_accuracy_pixels": pixels,
        "probe_n_train": len(tr),
        "probe_n_test": len(te),
        **collapse_stats(z_test),
    }
