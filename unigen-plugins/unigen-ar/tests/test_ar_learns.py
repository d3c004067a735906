"""It learns: five hundred small steps on digits take both models far under the uniform 4.09 bits/dim,
and their samples move toward the test digits (MMD) and look like digits to a classifier."""

from __future__ import annotations

import math

import pytest
import torch

import unigen
from unigen.metrics.mmd import mmd2
from unigen.metrics.nll import bits_per_dim
from unigen.testing import quick_train, untrained

# Small widths so both runs fit the family's budget; lr 3e-3 converges fastest at this size.
RUNS = {
    "pixelcnn": ("hidden=32", "layers=3", "head=64", "first_kernel=5"),
    "transformer-ar": ("dim=48", "heads=4", "layers=2"),
}
STEPS = 500  # at batch 32: more updates beat bigger batches for the same compute here
BATCH = 32
N_SAMPLES = 100


@pytest.fixture(scope="module")
def digits():
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    train, test = unigen.load_dataset("digits"), unigen.load_dataset("digits", "test")
    with threadpool_limits(1):  # BLAS threads fighting the other test workers cost 50x here
        clf = LogisticRegression(max_iter=1000).fit(train.x.flatten(1).numpy(), train.y.numpy())
    return train, test, clf


def _quality(model, test, clf):
    with torch.no_grad():
        bpd = bits_per_dim(model.logprob(test.x), test.info, discrete=True).mean().item()
        torch.manual_seed(1)
        x = model.sample(N_SAMPLES)
    confidence = clf.predict_proba(x.flatten(1).numpy()).max(1).mean()
    return bpd, mmd2(x, test.x).item(), float(confidence)


@pytest.mark.slow
@pytest.mark.parametrize("model_id", RUNS)
def test_learns_digits_well_under_uniform_bits_per_dim_with_digit_like_samples(model_id, digits):
    train, test, clf = digits
    before = _quality(untrained(model_id, train, overrides=RUNS[model_id]), test, clf)
    trained = quick_train(model_id, train, steps=STEPS, batch_size=BATCH, overrides=RUNS[model_id],
                          trainer={"lr": 3e-3})
    after = _quality(trained, test, clf)
    uniform = math.log2(train.info.levels)
    assert before[0] > uniform - 0.5  # an untrained softmax is near uniform
    assert after[0] < 2.5, f"test bits/dim {after[0]:.3f}"
    assert after[1] < 0.5 * before[1], f"MMD^2 to test digits {after[1]:.4f} vs untrained {before[1]:.4f}"
    assert after[2] > before[2] + 0.07, f"classifier confidence {after[2]:.3f} vs untrained {before[2]:.3f}"
