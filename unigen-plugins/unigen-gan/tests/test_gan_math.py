"""The formulas of the family against their definitions: the WGAN-GP gradient penalty, StyleGAN2's
weight (de)modulation, style mixing, the tracked w_avg and the truncation trick; network shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen import DataInfo
from unigen_gan import gradient_penalty
from unigen_gan.stylegan_layers import ModulatedConv2d, minibatch_stddev

# -- the gradient penalty (Gulrajani et al. 2017, Algorithm 1) ---------------------------------------


@given(b=st.integers(1, 6), d=st.integers(1, 5), seed=st.integers(0, 10_000), weight=st.floats(0.1, 20))
def test_gradient_penalty_of_a_quadratic_critic_matches_the_hand_computation(b, d, seed, weight):
    """f(x) = 1/2 |x|^2 has grad f(x_hat) = x_hat, so the penalty is lambda mean_i (|x_hat_i| - 1)^2."""
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    eps = rng.uniform(size=b)
    x_hat = eps[:, None] * real + (1 - eps[:, None]) * fake
    by_hand = weight * np.mean((np.linalg.norm(x_hat, axis=1) - 1) ** 2)
    critic = lambda x: 0.5 * x.pow(2).sum(1)
    gp = gradient_penalty(critic, torch.tensor(real), torch.tensor(fake), torch.tensor(eps), weight=weight)
    assert float(gp) == pytest.approx(by_hand, rel=1e-9, abs=1e-12)


@given(d=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_gradient_penalty_of_a_linear_critic_and_its_gradient(d, seed):
    """f(x) = a.x + c: the penalty is 10 (|a| - 1)^2 whatever the interpolates, and its gradient with
    respect to a (create_graph) is 20 (|a| - 1) a / |a|."""
    torch.manual_seed(seed)
    critic = torch.nn.Linear(d, 1).double()
    real, fake = torch.randn(4, d, dtype=torch.float64), torch.randn(4, d, dtype=torch.float64)
    gp = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake)
    a = critic.weight.detach()[0]
    norm = a.norm()
    assert float(gp) == pytest.approx(float(10 * (norm - 1) ** 2), rel=1e-9)
    (grad_a,) = torch.autograd.grad(gp, critic.weight)
    torch.testing.assert_close(grad_a[0], 20 * (norm - 1) * a / norm)


def test_gradient_penalty_on_images_uses_the_norm_over_all_pixels():
    real, fake = torch.randn(3, 1, 4, 4, dtype=torch.float64), torch.randn(3, 1, 4, 4, dtype=torch.float64)
    eps = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    gp = gradient_penalty(lambda x: 0.5 * x.pow(2).sum((1, 2, 3)), real, fake, eps, weight=1.0)
    x_hat = eps.view(3, 1, 1, 1) * real + (1 - eps.view(3, 1, 1, 1)) * fake
    assert float(gp) == pytest.approx(float(((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()))


def test_wgan_gp_critic_scores_each_example_on_its_own():
    """No batch norm in the penalised critic: f(x)_i depends on x_i alone."""
    data = unigen.load_dataset("digits")
    torch.manual_seed(0)
    model = unigen.build_model("wgan-gp", data.info, {"width": 8}).train()
    x = data.x[:6]
    torch.testing.assert_close(model.discriminator(x)[:2], model.discriminator(x[:2]))


# -- StyleGAN2 ----------------------------------------------------------------------------------------


@given(b=st.integers(1, 3), cin=st.integers(1, 4), cout=st.integers(1, 4), k=st.sampled_from([1, 3]),
       demod=st.booleans(), seed=st.integers(0, 1000))
def test_modulated_conv_equals_convolving_with_the_modulated_weights(b, cin, cout, k, demod, seed):
    """Eq. 1-3 of StyleGAN2 applied literally, one example at a time."""
    torch.manual_seed(seed)
    conv = ModulatedConv2d(cin, cout, k, w_dim=5, demodulate=demod).double()
    x, w = torch.randn(b, cin, 5, 5, dtype=torch.float64), torch.randn(b, 5, dtype=torch.float64)
    out = conv(x, w)
    s = conv.affine(w)
    for i in range(b):
        wi = conv.scale * conv.weight * s[i][None, :, None, None]  # w'_ijk = s_i w_ijk
        if demod:
            wi = wi / torch.sqrt(wi.pow(2).sum((1, 2, 3), keepdim=True) + 1e-8)  # w''
        torch.testing.assert_close(out[i], F.conv2d(x[i : i + 1], wi, padding=k // 2)[0])


@given(scale=st.floats(0.1, 10), seed=st.integers(0, 1000))
def test_demodulation_makes_the_conv_invariant_to_the_style_scale(scale, seed):
    torch.manual_seed(seed)
    conv = ModulatedConv2d(3, 4, 3, w_dim=2).double()
    x, w = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    with torch.no_grad():
        base = conv(x, w)
        conv.affine.weight.mul_(scale)
        conv.affine.bias.mul_(scale)
        torch.testing.assert_close(conv(x, w), base, rtol=1e-5, atol=1e-5)  # up to the eps of Eq. 3


def test_minibatch_stddev_is_the_std_within_each_group():
    x = torch.randn(8, 3, 2, 2)
    out = minibatch_stddev(x, group=4)
    assert out.shape == (8, 4, 2, 2)
    for m in range(2):  # groups are strided over the batch: {m, m + 2, m + 4, m + 6}
        members = x[m::2]
        expect = members.std(0, unbiased=False).mean()
        torch.testing.assert_close(out[m::2, 3], expect.expand(4, 2, 2), atol=1e-5, rtol=1e-5)


def _stylegan(**config):
    data = unigen.load_dataset("digits")
    torch.manual_seed(0)
    return unigen.build_model("stylegan", data.info, {"z_dim": 8, "w_dim": 8, "width": 8, **config}), data


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_style_mixing_takes_w1_before_the_crossover_and_w2_after(prob, monkeypatch):
    model, _ = _stylegan(mixing_prob=prob)
    g = model.generator
    seen = {}
    monkeypatch.setattr(g.synthesis, "forward", lambda ws: seen.setdefault("ws", ws))
    torch.manual_seed(3)
    z = torch.randn(64, 8)
    model.generate(z)
    ws = seen["ws"]  # (B, num_ws, w_dim)
    w1 = g.mapping(z)
    n = g.synthesis.num_ws
    for i in range(64):
        same = torch.isclose(ws[i], w1[i].expand(n, -1)).all(1)
        cutoff = int(same.long().argmin()) if not same.all() else n
        assert same[:cutoff].all() and not same[cutoff:].any()  # a prefix from w1, the rest from one w2
        if prob == 1.0:
            assert 1 <= cutoff < n and torch.equal(ws[i, cutoff:], ws[i, -1].expand(n - cutoff, -1))
        else:
            assert cutoff == n


def test_w_avg_tracks_the_mean_w_on_generator_steps_only():
    model, data = _stylegan()
    batch = data.batch(slice(0, 16))
    g = model.generator
    before = g.w_avg.clone()
    model.loss(batch, group="discriminator")
    assert torch.equal(g.w_avg, before)
    torch.manual_seed(4)
    z = torch.randn(16, 8)
    torch.manual_seed(4)
    model.loss(batch, group="generator")  # draws the same z first
    expect = before + (1 - model.config.w_avg_beta) * (g.mapping(z).mean(0) - before)
    torch.testing.assert_close(g.w_avg, expect.detach())


@given(psi=st.floats(0, 1))
def test_truncation_moves_w_toward_w_avg(psi):
    model, _ = _stylegan(truncation=psi)
    g = model.sampling_generator  # G_ema: what sampling uses
    g.w_avg.copy_(torch.randn(8))
    seen = {}
    g.synthesis.forward = lambda ws: seen.setdefault("ws", ws)
    z = torch.randn(5, 8)
    model.reverse(z)
    expect = g.w_avg + psi * (g.mapping(z) - g.w_avg)  # StyleGAN Eq. 3
    torch.testing.assert_close(seen["ws"], expect[:, None].expand(-1, g.synthesis.num_ws, -1))


def test_full_truncation_gives_one_image_when_no_noise_is_learned():
    model, _ = _stylegan(truncation=0.0)  # noise strengths start at 0
    with torch.no_grad():
        x = model.sample(4)
    torch.testing.assert_close(x, x[:1].expand_as(x))


# -- networks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["gan", "wgan", "wgan-gp", "stylegan"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 8), (1, 7, 7), (1, 16, 16)])
def test_image_networks_fit_any_square_size(model_id, shape):
    info = DataInfo(name="x", shape=shape, kind="image", levels=256)
    torch.manual_seed(0)
    model = unigen.build_model(model_id, info, {"z_dim": 4, "width": 4}).eval()
    with torch.no_grad():
        x = model.sample(3)
        assert x.shape == (3, *shape)
        assert model.discriminator(x).shape == (3,)


def test_dcgan_samples_lie_in_the_image_range():
    info = DataInfo(name="x", shape=(1, 28, 28), kind="image", levels=256)
    model = unigen.build_model("gan", info, {"width": 4}).eval()
    with torch.no_grad():
        x = model.sample(4)
    assert x.min() >= -1 and x.max() <= 1
