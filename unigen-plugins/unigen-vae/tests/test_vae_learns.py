"""Each VAE-family model beats its untrained self on the test ELBO (bits/dim) after a short run."""

from __future__ import annotations

import math

import pytest
import torch

import unigen
from unigen.metrics import EvalContext, nll
from unigen.testing import quick_train, untrained

UNIFORM = math.log2(17)  # bits/dim of the uniform distribution over digits' 17 levels


def _bpd(model) -> float:
    ctx = EvalContext(model=model, record={"dataset": "digits"}, host=unigen.default_host(), n=297)
    return nll(ctx)["nll_bits_per_dim"]


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["vae", "beta-vae", "vq-vae", "fsq"])
def test_trained_model_beats_its_untrained_self_on_the_elbo(model_id):
    before = _bpd(untrained(model_id))
    after = _bpd(quick_train(model_id, steps=250, batch_size=64, trainer={"lr": 2e-3}))
    assert after < before - 0.7, (before, after)
    assert after < UNIFORM, (before, after)


@pytest.mark.slow
def test_importance_weighted_estimate_is_tighter_than_the_elbo():
    model = quick_train("vae", steps=150, batch_size=64, trainer={"lr": 2e-3})
    x = unigen.load_dataset("digits", "test").x[:64]
    torch.manual_seed(0)
    elbo = model.logprob(x).mean()
    iw = unigen.build_model("vae", model.data, unigen.config.to_dict(model.config) | {"logprob_samples": 32})
    iw.load_state_dict(model.state_dict())
    iw.eval()
    assert iw.logprob_kind == "estimate"
    with torch.no_grad():
        assert iw.logprob(x).mean() > elbo
