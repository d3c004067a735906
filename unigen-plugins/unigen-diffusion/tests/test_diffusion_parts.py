"""Consistency and latent-diffusion pieces that need a (tiny) trained run: the boundary condition, the
frozen teacher/autoencoder, the message when the autoencoder's plugin is missing."""

from __future__ import annotations

import json

import attrs
import pytest
import torch

import unigen
from unigen.testing import example_config
from unigen_diffusion import LDM, Consistency

torch.set_num_threads(1)
DIGITS = unigen.load_dataset("digits").info


@pytest.fixture(scope="module")
def consistency(tmp_path_factory):
    cfg = example_config(Consistency, DIGITS, tmp_path_factory.mktemp("cd"))  # trains the tiny teacher first
    torch.manual_seed(0)
    return unigen.build_model("consistency", DIGITS, cfg)


def test_consistency_function_is_the_identity_at_sigma_min(consistency):
    y = torch.randn(6, 1, 8, 8)
    i = torch.zeros(6, dtype=torch.long)
    torch.testing.assert_close(consistency.f(consistency.phi, y, i), y)
    far = consistency.f(consistency.phi, y, torch.full((6,), len(consistency.grid_n) - 1))
    assert not torch.allclose(far, y)


def _variant(consistency, **changes):
    torch.manual_seed(0)
    return unigen.build_model("consistency", DIGITS, attrs.evolve(consistency.config, **changes))


def test_consistency_student_can_start_as_the_teachers_x0_prediction(consistency):
    """init="teacher" (LCM's parametrisation): f is the x0 prediction of the trainable eps network, so at the
    start it is the teacher's own x0 prediction (clipped to [-1, 1] as the teacher's sampler clips) at every
    grid point above sigma_min, where f = y; every layer trains; "copy" and "random" do not start there."""
    warm = _variant(consistency, init="teacher")
    assert warm.teacher.clip  # the tiny digits teacher clips x0, so the comparison covers the clip
    torch.manual_seed(1)
    for j in range(1, len(warm.grid_n)):
        i = torch.full((6,), j, dtype=torch.long)
        s = warm.grid_sigma[j]
        y = s * torch.randn(6, 1, 8, 8) + torch.rand(6, 1, 8, 8)
        x0_teacher = warm.teacher.predict_x0(y * torch.rsqrt(1 + s**2), warm.grid_n[i], warm.teacher_eps(y, i))
        for net in (warm.phi, warm.target):
            torch.testing.assert_close(warm.f(net, y, i), x0_teacher, rtol=1e-5, atol=1e-5 * float(s))
    i0 = torch.zeros(6, dtype=torch.long)
    torch.testing.assert_close(warm.f(warm.phi, y, i0), y)
    warm.loss(unigen.Batch(unigen.load_dataset("digits").x[:32])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in warm.parameter_groups()["main"])
    for other in (_variant(consistency, init="copy"), _variant(consistency, init="random")):
        assert not torch.allclose(other.f(other.phi, y, i), x0_teacher, atol=1e-2)


def test_consistency_loss_weights_each_grid_interval(consistency):
    """weighting="ict": lambda_i proportional to 1 / (sigma_{i+1} - sigma_i), mean 1 over the grid, applied to
    the pair (sigma_{i+1}, sigma_i) each example was drawn at; "uniform": lambda = 1."""
    w, sig = consistency.grid_weight, consistency.grid_sigma.double()
    assert consistency.config.weighting == "ict"
    torch.testing.assert_close(w.double(), (1 / (sig[1:] - sig[:-1])) / (1 / (sig[1:] - sig[:-1])).mean())
    assert (_variant(consistency, weighting="uniform").grid_weight == 1).all()
    x = unigen.load_dataset("digits").x[:32]
    torch.manual_seed(3)
    loss = consistency.loss(unigen.Batch(x))
    torch.manual_seed(3)
    i = torch.randint(0, len(consistency.grid_n) - 1, (32,))
    y_hi = x + consistency.grid_sigma[i + 1].view(-1, 1, 1, 1) * torch.randn_like(x)
    with torch.no_grad():
        target = consistency.f(consistency.target, consistency.teacher_step(y_hi, i), i)
    d = (consistency.f(consistency.phi, y_hi, i + 1) - target).pow(2).mean((1, 2, 3))
    torch.testing.assert_close(loss, (w[i] * d).mean())
    assert not torch.allclose(loss, d.mean())


def test_consistency_teacher_is_frozen_and_target_follows_by_ema(consistency):
    trainable = {id(p) for ps in consistency.parameter_groups().values() for p in ps}
    assert not any(id(p) in trainable or p.requires_grad for p in consistency.teacher.parameters())
    assert not any(id(p) in trainable for p in consistency.target.parameters())
    assert (consistency.grid_sigma[1:] > consistency.grid_sigma[:-1]).all()
    before = [p.clone() for p in consistency.target.parameters()]
    with torch.no_grad():
        for p in consistency.phi.parameters():
            p.add_(1.0)
    consistency.after_step("main", 0)
    mu = consistency.config.target_decay
    for b, p, q in zip(before, consistency.target.parameters(), consistency.phi.parameters()):
        torch.testing.assert_close(p, mu * b + (1 - mu) * q)


def test_ldm_autoencoder_is_frozen_and_decoded_through_the_hooks(tmp_path):
    pytest.importorskip("unigen_vae")
    cfg = example_config(LDM, DIGITS, tmp_path)  # trains the tiny autoencoder first
    model = unigen.build_model("ldm", DIGITS, cfg)
    trainable = {id(p) for ps in model.parameter_groups().values() for p in ps}
    assert model.autoencoder.parameters() and not any(
        id(p) in trainable or p.requires_grad for p in model.autoencoder.parameters())
    model.train()
    assert not model.autoencoder.training
    x = unigen.load_dataset("digits").x[:16]
    loss = model.loss(unigen.Batch(x))
    loss.backward()
    assert all(p.grad is None for p in model.autoencoder.parameters())
    assert float(model.latent_scale) > 0
    assert model.sample(3, 4).shape == (3, 1, 8, 8)


def test_ldm_names_the_plugin_to_install_when_the_autoencoder_model_is_unknown(tmp_path):
    run = tmp_path / "ae"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": 1, "model": "no-such-autoencoder", "model_config": {},
                                              "dataset": "digits", "trainer": {},
                                              "data": {"name": "digits", "shape": [1, 8, 8]}}))
    with pytest.raises(unigen.UnigenError, match="no installed plugin provides"):
        unigen.build_model("ldm", DIGITS, {"autoencoder": str(run)})
    with pytest.raises(unigen.UnigenError, match="--set autoencoder=RUN_DIR"):
        unigen.build_model("ldm", DIGITS, {})
    with pytest.raises(unigen.UnigenError, match="--set teacher=RUN_DIR"):
        unigen.build_model("consistency", DIGITS, {})
