"""Invariants of the VAE family's mathematics, drawn by hypothesis."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen_vae.likelihood import discretized_gaussian_logp
from unigen_vae.quantized import FSQ, FSQConfig, nearest_code
from unigen_vae.vae import gaussian_kl

DIGITS = unigen.DataInfo(name="digits", shape=(1, 8, 8), kind="image", levels=17, num_classes=10)
MOONS = unigen.DataInfo(name="moons", shape=(2,), kind="vector")
floats = st.floats(-2.0, 2.0, allow_nan=False)


@given(mu=floats, logvar=st.floats(-3.0, 2.0), seed=st.integers(0, 2**16))
def test_reparameterized_samples_have_the_posterior_mean_and_std(mu, logvar, seed):
    torch.manual_seed(seed)
    model = unigen.build_model("vae", DIGITS, {"z_dim": 2})
    m, lv = torch.full((20_000, 2), mu), torch.full((20_000, 2), logvar)
    model.encode = lambda x: (m, lv)  # isolate the reparameterization from the encoder
    z = model.forward(torch.zeros(20_000, 1, 8, 8))
    std = math.exp(0.5 * logvar)
    assert abs(z.mean().item() - mu) < 5 * std / math.sqrt(40_000)
    assert abs(z.std().item() - std) < 0.03 * std


@given(mu=st.lists(floats, min_size=3, max_size=3), logvar=st.lists(st.floats(-2.0, 1.5), min_size=3, max_size=3))
def test_closed_form_kl_matches_monte_carlo(mu, logvar):
    mu_t, lv_t = torch.tensor([mu], dtype=torch.float64), torch.tensor([logvar], dtype=torch.float64)
    q = torch.distributions.Normal(mu_t, (0.5 * lv_t).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu_t), torch.ones_like(mu_t))
    torch.manual_seed(0)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    exact = gaussian_kl(mu_t, lv_t)[0]
    assert torch.allclose(exact, torch.distributions.kl_divergence(q, p).sum(), atol=1e-9)
    assert abs(mc - exact) < 0.02 + 0.02 * exact


@given(mean=floats, log_scale=st.floats(-4.0, 1.0), levels=st.integers(2, 64))
def test_discretized_gaussian_probabilities_sum_to_one_over_the_levels(mean, log_scale, levels):
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64).view(levels, 1)
    logp = discretized_gaussian_logp(grid, torch.full_like(grid, mean), torch.full_like(grid, log_scale), levels)
    assert torch.isclose(logp.exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-4)


def _fsq(levels):
    return FSQ(FSQConfig(levels=tuple(levels)), DIGITS)


@given(levels=st.lists(st.integers(2, 9), min_size=1, max_size=4), seed=st.integers(0, 2**16),
       scale=st.floats(0.1, 10.0))
def test_fsq_outputs_lie_on_the_level_grid_and_rounding_is_idempotent(levels, seed, scale):
    fsq = _fsq(levels)
    torch.manual_seed(seed)
    z = torch.randn(64, 3, len(levels)) * scale
    z_q, codes, _ = fsq.quantize(z)
    digits = z_q * fsq.half_width + fsq.half_width  # on the grid these are integers 0..L-1
    assert torch.allclose(digits, digits.round(), atol=1e-5)
    assert (digits.round() >= 0).all() and (digits.round() <= fsq.levels_t - 1).all()
    assert z_q.abs().max() <= 1 + 1e-6
    # Rounding an already quantized vector changes nothing; so does decoding its code.
    assert torch.equal(torch.round(z_q * fsq.half_width) / fsq.half_width, z_q)
    assert torch.allclose(fsq.indices_to_codes(codes), z_q)
    assert (codes >= 0).all() and (codes < fsq.codebook_size).all()


@given(levels=st.lists(st.integers(2, 6), min_size=1, max_size=3))
def test_fsq_code_indices_are_a_bijection_onto_the_grid(levels):
    fsq = _fsq(levels)
    idx = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(idx)
    assert torch.equal(fsq.codes_to_indices(codes), idx)
    assert len({tuple(c.tolist()) for c in codes}) == fsq.codebook_size


@given(levels=st.lists(st.integers(2, 9), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_fsq_prior_gives_no_mass_to_digits_a_dimension_cannot_take(levels, seed):
    """The prior table is (P, d, max L); digit k of dimension i exists only for k < L_i."""
    fsq = FSQ(FSQConfig(levels=tuple(levels), width=4, hidden=8, n_latents=2), MOONS)
    digit = torch.arange(max(levels))
    invalid = digit[None, :] >= torch.tensor(levels)[:, None]  # (d, max L)
    assert (fsq.prior[:, invalid] == 0).all()
    assert torch.allclose(fsq.prior.sum(-1), torch.ones(()))
    assert torch.allclose(fsq.prior[:, ~invalid], 1 / fsq.levels_t[:, None].expand(-1, max(levels))[~invalid].float())
    # sampling masks too, even with a prior table that covers every digit (e.g. an older checkpoint)
    fsq.prior.fill_(1.0 / max(levels))
    torch.manual_seed(seed)
    values = fsq.sample_values(200)  # (200, P, d)
    assert (values < fsq.levels_t).all() and (values >= 0).all()
    grid = fsq.from_values(values)
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(grid)), grid)  # decoded latents are on the grid


def test_fsq_straight_through_gradient_reaches_the_encoder():
    fsq = _fsq([8, 5, 5, 5])
    z = torch.randn(4, 2, 4, requires_grad=True)
    fsq.quantize(z)[0].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


@given(n=st.integers(1, 50), k=st.integers(1, 40), d=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_vq_picks_the_nearest_code_as_brute_force_does(n, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    z, codebook = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    brute = torch.stack([((codebook - zi) ** 2).sum(1).argmin() for zi in z])
    got = nearest_code(z, codebook)
    # Ties aside, the chosen code is at the minimum distance.
    dist = ((z[:, None] - codebook[None]) ** 2).sum(-1)
    assert torch.allclose(dist.gather(1, got[:, None]), dist.gather(1, brute[:, None]), atol=1e-5)


def test_vq_ema_moves_used_codes_towards_their_inputs_and_restarts_dead_ones():
    torch.manual_seed(0)
    model = unigen.build_model("vq-vae", DIGITS, {"codebook_size": 8, "code_dim": 4})
    model.train()
    before = model.codebook.clone()
    batch = unigen.load_dataset("digits").batch(slice(0, 32))
    model.loss(batch)
    flat, codes = model._last_batch
    used = torch.zeros(8, dtype=torch.bool)
    used[codes] = True
    model.ema_sum.zero_()
    model.ema_count.zero_()  # no history: codes unused in this batch fall below the threshold
    model.after_step("main", 0)
    rows = {tuple(r.tolist()) for r in flat}
    for k in range(8):
        if used[k]:  # N_k = (1-g) n_k, m_k = (1-g) sum z_e: the code moves to its inputs' mean
            assert torch.allclose(model.codebook[k], flat[codes == k].mean(0), atol=1e-4)
        else:  # restarted at an encoder output of the batch
            assert tuple(model.codebook[k].tolist()) in rows
    assert not torch.equal(model.codebook, before)


def test_beta_vae_is_a_vae_with_one_number_changed():
    from unigen_vae.vae import VAE, BetaVAE, BetaVAEConfig, VAEConfig

    assert issubclass(BetaVAE, VAE) and BetaVAEConfig().beta is None and VAEConfig().beta == 1.0
    # The default beta follows the data: 4 on images (Higgins et al.), 1 on vectors (a learned-variance
    # Gaussian decoder collapses the posterior for any beta > 1); a beta the user sets wins.
    moons = unigen.load_dataset("moons").info
    assert unigen.build_model("beta-vae", DIGITS).beta == 4.0 and unigen.build_model("beta-vae", moons).beta == 1.0
    assert unigen.build_model("beta-vae", moons, {"beta": 4.0}).beta == 4.0
    torch.manual_seed(0)
    a = unigen.build_model("beta-vae", DIGITS)
    b = unigen.build_model("vae", DIGITS, {"beta": 4.0})
    b.load_state_dict(a.state_dict())
    batch = unigen.load_dataset("digits").batch(slice(0, 16))
    torch.manual_seed(1)
    la = a.loss(batch)
    torch.manual_seed(1)
    assert torch.equal(la, b.loss(batch))


@pytest.mark.parametrize("model_id", ["vae", "vq-vae", "fsq"])
def test_vector_data_gets_an_mlp_and_a_gaussian_density(model_id):
    moons = unigen.load_dataset("moons")
    model = unigen.build_model(model_id, moons.info).eval()
    with torch.no_grad():
        assert model.sample(5).shape == (5, 2)
        assert model.logprob(moons.x[:7]).shape == (7,)


def test_vae_samples_of_vectors_are_draws_from_the_decoder_not_its_mean():
    """On vectors the model is x ~ N(mean(z), scale(z)^2): sampling draws from it. (The mean alone put
    every sample of a VAE that explains 2-D data with its decoder variance on a single point.)"""
    data = unigen.load_dataset("moons")
    model = unigen.build_model("vae", data.info).eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.zero_()  # a decoder that ignores z: mean 0, scale 1
        torch.manual_seed(0)
        x = model.sample(2000)
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=0.1)
    assert torch.allclose(x.std(0), torch.ones(2), atol=0.1)


@pytest.mark.parametrize(("data", "codes", "levels"), [
    (DIGITS, 8, (5, 3)),
    (unigen.DataInfo(name="fashion-mnist", shape=(1, 28, 28), kind="image", levels=256), 64, (8, 5, 5, 5)),
    (unigen.DataInfo(name="shapes", shape=(3, 32, 32), kind="image", levels=256), 64, (8, 5, 5, 5)),
    (MOONS, 64, (8, 5, 5, 5)),
])
def test_default_code_sizes_follow_the_image_size_and_an_explicit_size_wins(data, codes, levels):
    """8x8 images get 8 codes / levels (5, 3); larger images and vectors the papers' 64 / (8, 5, 5, 5)."""
    vq, fsq = unigen.build_model("vq-vae", data), unigen.build_model("fsq", data)
    assert (vq.codebook_size, vq.codebook.shape[0], fsq.levels, fsq.codebook_size) == (
        codes, codes, levels, math.prod(levels))
    assert unigen.build_model("vq-vae", data, {"codebook_size": 16}).codebook.shape[0] == 16
    assert unigen.build_model("fsq", data, {"levels": [4, 4]}).codebook_size == 16
