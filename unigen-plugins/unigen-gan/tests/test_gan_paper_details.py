"""What the papers specify beyond the losses: StyleGAN2's path-length regularisation (Sec. 3.2, lazy,
with the running mean a) and generator EMA (used for sampling), and DCGAN's N(0, 0.02) initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import unigen
from unigen_gan.gan import GAN
from unigen_gan.stylegan_layers import path_lengths


def _stylegan(**config):
    data = unigen.load_dataset("digits")
    settings = {"z_dim": 8, "w_dim": 8, "width": 8, "mapping_layers": 2, "pl_weight": 2.0, **config}
    return data, unigen.build_model("stylegan", data.info, settings)


@pytest.mark.parametrize(("size", "small"), [(8, True), (32, True), (64, False)])
def test_stylegan_takes_stylegan2_adas_cifar_settings_up_to_32_pixels(size, small):
    """Up to 32 px: 2 mapping layers, no style mixing, no path-length penalty, no residual skips in D
    (StyleGAN2-ADA's CIFAR-10 configuration); larger images: the paper's (mapping depth 4 here, paper 8)."""
    info = unigen.DataInfo(name="x", kind="image", shape=(1, size, size))
    model = unigen.build_model("stylegan", info, {"width": 4, "w_dim": 8})
    expect = {"mapping_layers": 2, "mixing_prob": 0.0, "pl_weight": 0.0, "discriminator": "orig"} if small else \
        {"mapping_layers": 4, "mixing_prob": 0.9, "pl_weight": 2.0, "discriminator": "resnet"}
    assert {k: model.setting(k) for k in expect} == expect
    assert len(model.generator.mapping.net) == expect["mapping_layers"]
    assert all((b.skip is None) == small for b in model.discriminator.blocks)
    explicit = unigen.build_model("stylegan", info, {"width": 4, "w_dim": 8, "mixing_prob": 0.5, "discriminator": "resnet"})
    assert explicit.setting("mixing_prob") == 0.5 and explicit.discriminator.blocks[0].skip is not None


def test_the_discriminator_judges_fakes_in_the_data_range_as_sample_returns_them(monkeypatch):
    """The synthesis network has no output nonlinearity; the fakes D sees are clamped to [-1, 1] like samples."""
    _, model = _stylegan()
    monkeypatch.setattr(model.generator.synthesis, "forward", lambda ws: 3 * torch.randn(ws.shape[0], 1, 8, 8))
    x = model.generate(model.sample_latent(16))
    assert x.abs().max() <= 1 and (x.abs() == 1).any()


def test_path_lengths_of_a_linear_synthesis_are_the_norm_of_a_transpose_y():
    """g(w) = A vec(w): J^T y = A^T y, so the length is sqrt(mean_layers sum_w (A^T y)^2)."""
    torch.manual_seed(0)
    b, num_ws, w_dim = 5, 3, 4
    a = torch.randn(num_ws * w_dim, 2 * 3 * 3, dtype=torch.float64)
    synthesis = lambda ws: (ws.flatten(1) @ a).view(-1, 2, 3, 3)
    ws = torch.randn(b, num_ws, w_dim, dtype=torch.float64)
    y = torch.randn(b, 2, 3, 3, dtype=torch.float64)
    lengths, _ = path_lengths(synthesis, ws, y)
    jt_y = (y.flatten(1) @ a.T).view(b, num_ws, w_dim)
    assert torch.allclose(lengths, jt_y.pow(2).sum(2).mean(1).sqrt())


def test_path_lengths_of_the_synthesis_network_match_its_autograd_jacobian():
    _, model = _stylegan()
    synthesis = model.generator.synthesis.double()
    ws = torch.randn(3, synthesis.num_ws, 8, dtype=torch.float64)

    def g(w):
        torch.manual_seed(7)  # the same noise inputs on every call
        return synthesis(w)

    y = torch.randn_like(g(ws))
    torch.manual_seed(7)
    lengths, _ = path_lengths(synthesis, ws.clone(), y)
    jac = torch.autograd.functional.jacobian(g, ws)  # (B, C, H, W, B, num_ws, w_dim)
    for i in range(3):
        jt_y = torch.einsum("chw,chwnd->nd", y[i], jac[i, :, :, :, i])  # (num_ws, w_dim)
        assert torch.allclose(lengths[i], jt_y.pow(2).sum(1).mean().sqrt())


def test_path_length_penalty_is_lazy_scaled_and_tracks_its_running_mean():
    data, model = _stylegan()
    batch = data.batch(slice(0, 16))
    model.eval()  # a is not updated outside training: the three passes below see the same a
    model.pl_mean.fill_(0.3)
    model.generator_steps.fill_(1)  # not a regularisation step (interval 4)
    torch.manual_seed(0)
    plain = model.loss(batch, "generator")
    model.generator_steps.fill_(4)
    torch.manual_seed(0)
    regularised = model.loss(batch, "generator")
    torch.manual_seed(0)
    GAN.group_loss(model, batch, "generator")  # the same draws as the GAN part above
    penalty = model.path_length_penalty(model.sample_latent(8))  # half the batch (pl_batch_shrink = 2)
    assert penalty > 0
    assert torch.allclose(regularised, plain + 4 * penalty)
    # In training a moves by pl_decay towards the batch's mean length.
    model.train()
    torch.manual_seed(1)
    lengths, _ = path_lengths(model.generator.synthesis, model.styles(model.sample_latent(8)))
    torch.manual_seed(1)
    model.path_length_penalty(model.sample_latent(8))
    assert torch.allclose(model.pl_mean, torch.tensor(0.3).lerp(lengths.mean(), 0.01))


def test_generator_ema_follows_the_formula_and_is_what_sample_uses():
    data, model = _stylegan(ema_rampup=0.0)
    model._batch = 64
    before = [p.detach().clone() for p in model.generator_ema.parameters()]
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.after_step("discriminator", 0)  # only generator steps move it
    assert all(torch.equal(e, b) for e, b in zip(model.generator_ema.parameters(), before))
    model.after_step("generator", 0)
    beta = 0.5 ** (64 / 10_000)
    for e, b, p in zip(model.generator_ema.parameters(), before, model.generator.parameters()):
        assert torch.allclose(e, beta * b + (1 - beta) * p)
    assert all(not p.requires_grad for p in model.generator_ema.parameters())
    assert not any(p is q for q in model.generator_ema.parameters() for g in model.parameter_groups().values() for p in g)
    z = torch.randn(6, 8)
    torch.manual_seed(3)
    sampled = model.reverse(z)
    torch.manual_seed(3)
    assert torch.equal(sampled, model.generator_ema(z))
    torch.manual_seed(3)
    assert not torch.allclose(sampled, model.generator(z))


def test_trained_stylegan_samples_from_its_ema_generator():
    from unigen.testing import quick_train

    model = quick_train("stylegan", "digits", steps=6, batch_size=16,
                        overrides=["z_dim=8", "w_dim=8", "width=8", "mapping_layers=2"])
    assert int(model.generator_steps) == 6
    diffs = [float((e - p).detach().abs().max()) for e, p in zip(model.generator_ema.parameters(), model.generator.parameters())]
    assert max(diffs) > 0  # G_ema lags G
    z = torch.randn(4, 8)
    torch.manual_seed(0)
    x = model.reverse(z)
    torch.manual_seed(0)
    assert torch.equal(x, model.generator_ema(z))


@pytest.mark.parametrize("size", [8, 28])
def test_dcgan_initialisation_is_normal_with_std_0_02(size):
    torch.manual_seed(0)
    info = unigen.DataInfo(name="grey", shape=(1, size, size), kind="image", levels=256)
    model = unigen.build_model("gan", info, {"width": 32})
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert len(weights) >= 4
    for w in weights:
        assert abs(float(w.std()) - 0.02) < 0.2 * 0.02 + 2 / w.numel() ** 0.5 * 0.02, (w.shape, float(w.std()))
        assert abs(float(w.mean())) < 4 * 0.02 / w.numel() ** 0.5
    gammas = torch.cat([m.weight.detach() for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(float(gammas.mean()) - 1) < 0.01 and abs(float(gammas.std()) - 0.02) < 0.006
    biases = [m.bias for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    assert all(float(b.abs().max()) == 0 for b in biases)


# -- defaults that follow the data (Gulrajani et al.'s toy settings for 2-D vectors) -----------------------


def test_wgan_gp_defaults_follow_the_kind_of_data():
    moons, digits = unigen.load_dataset("moons").info, unigen.load_dataset("digits").info
    toy, images = unigen.build_model("wgan-gp", moons), unigen.build_model("wgan-gp", digits)
    assert toy.trainer_defaults == {"lr": 5e-4, "betas": (0.5, 0.9), "lr_schedule": "linear"}
    assert images.trainer_defaults == {"lr": 1e-4, "betas": (0.0, 0.9)}
    assert (toy.gp_weight, images.gp_weight) == (0.1, 10.0)
    assert unigen.build_model("wgan-gp", moons, {"gp_weight": 3.0}).gp_weight == 3.0  # the user's value wins


def test_every_reader_takes_the_defaults_from_the_built_model(tmp_path):
    import json

    from unigen.cli import main
    from unigen.trainer import trainer_config

    toy = unigen.build_model("wgan-gp", unigen.load_dataset("moons").info)
    assert trainer_config(toy, {"steps": 5}).lr == 5e-4  # the Trainer and quick_train go through this
    assert main(["train", "wgan-gp", "--data", "moons", "--steps", "1", "--batch-size", "8", "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    trainer = json.loads((tmp_path / "run" / "run.json").read_text())["trainer"]
    assert (trainer["lr"], tuple(trainer["betas"]), trainer["lr_schedule"]) == (5e-4, (0.5, 0.9), "linear")
    assert main(["train", "wgan-gp", "--data", "moons", "--steps", "1", "--batch-size", "8", "--lr", "0.002",
                 "--out", str(tmp_path / "run2"), "--quiet"]) == 0
    assert json.loads((tmp_path / "run2" / "run.json").read_text())["trainer"]["lr"] == 0.002  # a flag wins
