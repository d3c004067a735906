"""Properties of the autoregressive family: causality of the masked convolutions and of attention,
exact normalised likelihoods, inverse-CDF sampling that follows the model's own conditionals, and a
key/value cache that changes nothing but the cost."""

from __future__ import annotations

import functools
import itertools

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import unigen
from unigen import DataInfo
from unigen.data import from_levels
from unigen_ar import PixelCNN, PixelCNNConfig, TransformerAR, TransformerARConfig, sample_level
from unigen_ar.base import raster_index

DIGITS = DataInfo(name="digits", shape=(1, 8, 8), levels=17)
RGB = DataInfo(name="rgb", shape=(3, 4, 5), levels=5)  # colour channels exercise the channel masks
TINY = {  # small enough to enumerate every image
    "gray": DataInfo(name="tiny", shape=(1, 2, 2), levels=3),
    "colour": DataInfo(name="tiny2", shape=(2, 1, 2), levels=3),
}


def _pixelcnn(info: DataInfo) -> PixelCNN:
    return PixelCNN(PixelCNNConfig(hidden=12, layers=2, first_kernel=5, head=24), info)


def _transformer(info: DataInfo) -> TransformerAR:
    return TransformerAR(TransformerARConfig(dim=24, heads=2, layers=2), info)


BUILDERS = {"pixelcnn": _pixelcnn, "transformer-ar": _transformer}


@functools.cache
def model(kind: str, info: DataInfo, seed: int = 0):
    torch.manual_seed(seed)
    m = BUILDERS[kind](info).eval()
    # Random weights far from the initialisation, so no conditional is accidentally flat.
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _random_levels(info: DataInfo, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, info.levels, (n, *info.shape), generator=g)


def _positions(info: DataInfo):
    """(position in generation order, (c, i, j)) for every pixel."""
    c, h, w = info.shape
    for ci, i, j in itertools.product(range(c), range(h), range(w)):
        yield raster_index(info.shape, ci, i, j), (ci, i, j)


# -- causality -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize("info", [DIGITS, RGB], ids=["gray", "colour"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_changing_position_i_never_changes_logits_at_or_before_i(kind, info, data):
    m = model(kind, info)
    d = info.dim
    p = data.draw(st.integers(0, d - 1), label="position i")
    c, i, j = next(cij for q, cij in _positions(info) if q == p)
    v = _random_levels(info, 2, data.draw(st.integers(0, 10_000), label="seed"))
    w = v.clone()
    w[:, c, i, j] = (v[:, c, i, j] + data.draw(st.integers(1, info.levels - 1), label="shift")) % info.levels
    with torch.no_grad():
        a, b = m.logits(v), m.logits(w)  # (B, K, C, H, W)
    diff = (a - b).abs().amax(dim=(0, 1))  # (C, H, W)
    order = torch.zeros(info.shape, dtype=torch.long)
    for q, cij in _positions(info):
        order[cij] = q
    assert diff[order <= p].max() <= 1e-6, "a conditional at or before the changed position moved"
    if p < d - 1:  # the change must reach some later position, or the test would prove nothing
        assert diff[order > p].max() > 1e-4


# -- exact likelihood ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BUILDERS)
def test_nll_is_the_sum_of_per_position_cross_entropies(kind):
    m = model(kind, DIGITS)
    v = _random_levels(DIGITS, 5, 1)
    x = from_levels(v, DIGITS.levels)
    with torch.no_grad():
        logits = m.forward(x)  # (B, K, C, H, W)
        picked = F.log_softmax(logits, dim=1).gather(1, v[:, None]).squeeze(1)  # (B, C, H, W)
        torch.testing.assert_close(m.logprob(x), picked.flatten(1).sum(1), rtol=1e-5, atol=1e-4)
        assert torch.isclose(m.loss(unigen.Batch(x)), -picked.mean(), rtol=1e-5)


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize("tiny", TINY)
def test_probabilities_of_all_images_sum_to_one(kind, tiny):
    info = TINY[tiny]
    m = model(kind, info)
    every = torch.tensor(list(itertools.product(range(info.levels), repeat=info.dim)))  # (K^D, D)
    # Images in generation order -> (N, C, H, W).
    v = every.view(-1, info.shape[1], info.shape[2], info.shape[0]).permute(0, 3, 1, 2)
    with torch.no_grad():
        total = torch.logsumexp(m.logprob(from_levels(v, info.levels)).double(), 0)
    assert abs(float(total)) < 1e-4


# -- sampling ----------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(
    logits=st.lists(st.floats(-5, 5), min_size=2, max_size=9),
    temperature=st.floats(0.2, 3.0),
    top_k=st.integers(0, 9),
)
def test_inverse_cdf_draws_each_level_with_its_probability(logits, temperature, top_k):
    k = len(logits)
    lg = torch.tensor(logits, dtype=torch.float64)
    n = 20_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # a uniform grid over [0, 1)
    level = sample_level(lg.expand(n, k), u, temperature, top_k)
    freq = torch.bincount(level, minlength=k).double() / n
    scaled = lg / temperature
    if 0 < top_k < k:
        scaled = scaled.masked_fill(scaled < scaled.topk(top_k).values[-1], float("-inf"))
    assert torch.allclose(freq, torch.softmax(scaled, 0), atol=2 / n)
    assert torch.all(level[1:] >= level[:-1])  # monotone in u: a deterministic transport of noise


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize("info", [DIGITS, RGB], ids=["gray", "colour"])
@pytest.mark.parametrize("temperature, top_k", [(1.0, 0), (0.7, 4)])
def test_samples_follow_the_conditionals_that_forward_computes(kind, info, temperature, top_k):
    m = model(kind, info)
    m.config = attrs.evolve(m.config, temperature=temperature, top_k=top_k)
    try:
        torch.manual_seed(0)
        u = torch.rand(4, *info.shape)
        with torch.no_grad():
            x = m.reverse(u)
            logits = m.forward(x)  # (B, K, C, H, W), from the finished samples in one pass
        v = unigen.data.to_levels(x, info.levels)
        for _, (c, i, j) in _positions(info):
            redraw = sample_level(logits[:, :, c, i, j], u[:, c, i, j], temperature, top_k)
            assert torch.equal(redraw, v[:, c, i, j]), (c, i, j)
    finally:
        m.config = attrs.evolve(m.config, temperature=1.0, top_k=0)


@pytest.mark.parametrize("kind", BUILDERS)
def test_sample_is_reverse_of_uniform_noise(kind):
    m = model(kind, DIGITS)
    torch.manual_seed(3)
    a = m.sample(3)
    torch.manual_seed(3)
    b = m.reverse(torch.rand(3, *DIGITS.shape))
    assert torch.equal(a, b) and a.shape == (3, 1, 8, 8)
    assert set(unigen.data.to_levels(a, 17).unique().tolist()) <= set(range(17))


# -- the key/value cache -----------------------------------------------------------------------------
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), temperature=st.floats(0.3, 2.0), top_k=st.integers(0, 17))
def test_sampling_with_the_cache_equals_sampling_without_it(seed, temperature, top_k):
    m = model("transformer-ar", DIGITS)
    out = []
    for cache in (True, False):
        m.config = attrs.evolve(m.config, kv_cache=cache, temperature=temperature, top_k=top_k)
        torch.manual_seed(seed)
        out.append(m.sample(2))
    m.config = attrs.evolve(m.config, kv_cache=True, temperature=1.0, top_k=0)
    assert torch.equal(out[0], out[1])


def test_cached_steps_give_the_full_pass_logits():
    m = model("transformer-ar", RGB)
    v = _random_levels(RGB, 2, 4)
    s = m.to_tokens(v)  # (B, D)
    inp = torch.cat([torch.full_like(s[:, :1], m.bos), s[:, :-1]], 1)
    from unigen_ar.transformer import KVCache

    cache = KVCache(2, 2, 2, m.length, 12, m.pos)
    with torch.no_grad():
        full = m.network(inp)  # (B, D, K)
        # A prefix of 5 tokens at once, then one token per step.
        steps = [m.network(inp[:, :5], 0, cache)] + [m.network(inp[:, d : d + 1], d, cache) for d in range(5, m.length)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cache, lengths", [(True, lambda d: [1] * d), (False, lambda d: list(range(1, d + 1)))])
def test_cached_sampling_feeds_one_token_per_network_step(cache, lengths):
    m = model("transformer-ar", DIGITS)
    m.config = attrs.evolve(m.config, kv_cache=cache)
    seen: list[int] = []
    hook = m.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    try:
        m.sample(2)
    finally:
        hook.remove()
        m.config = attrs.evolve(m.config, kv_cache=True)
    assert seen == lengths(DIGITS.dim)


# -- configs and data --------------------------------------------------------------------------------
def test_sampling_settings_are_config_fields_set_by_name():
    m = unigen.build_model("transformer-ar", DIGITS, overrides=["temperature=0.8", "top_k=5", "kv_cache=false"])
    assert (m.config.temperature, m.config.top_k, m.config.kv_cache) == (0.8, 5, False)
    p = unigen.build_model("pixelcnn", DIGITS, overrides=["temperature=0.5"])
    assert p.config.temperature == 0.5


@pytest.mark.parametrize("model_id, values, field", [
    ("transformer-ar", {"dim": 30, "heads": 4}, "heads"),
    ("transformer-ar", {"temperature": 0.0}, "temperature"),
    ("pixelcnn", {"kernel": 4}, "kernel"),
    ("pixelcnn", {"top_k": -1}, "top_k"),
])
def test_bad_configs_fail_naming_the_field(model_id, values, field):
    with pytest.raises(unigen.ConfigError, match=field):
        unigen.model_config(model_id, values)


@pytest.mark.parametrize("model_id", BUILDERS)
def test_continuous_vectors_are_refused_with_a_reason(model_id):
    # build_model checks the declared data_kinds first: "pixelcnn does not take vector data ...; it takes image data"
    with pytest.raises(unigen.UnigenError, match="does not take vector data.*it takes image data"):
        unigen.build_model(model_id, DataInfo(name="moons", shape=(2,), kind="vector"))
