"""The example plugin's own tests: exact likelihood against torch.distributions, and it learns."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen.data.toy import sample_toy
from unigen.metrics.mmd import mmd2
from unigen.testing import quick_train


@given(k=st.integers(1, 5), seed=st.integers(0, 1000))
def test_logprob_equals_torch_mixture(k, seed):
    torch.manual_seed(seed)
    info = unigen.DataInfo(name="toy", shape=(2,), kind="vector")
    model = unigen.build_model("gmm", info, {"components": k})
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=model.logits),
        torch.distributions.Independent(torch.distributions.Normal(model.mu, model.log_sigma.exp()), 1),
    )
    x = torch.randn(16, 2)
    assert torch.allclose(model.logprob(x), mix.log_prob(x), atol=1e-5)


@pytest.mark.slow
def test_gmm_learns_moons():
    before = unigen.build_model("gmm", unigen.load_dataset("moons").info).eval()
    model = quick_train("gmm", "moons", steps=400, batch_size=256)
    fresh = sample_toy("moons", 1000, seed=123)
    with torch.no_grad():
        assert mmd2(model.sample(1000), fresh) < 0.2 * mmd2(before.sample(1000), fresh)
