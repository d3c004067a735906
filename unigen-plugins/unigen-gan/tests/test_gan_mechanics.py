"""The adversarial mechanics of the GAN family, checked with the real generic trainer.

- one trainer step moves only the discriminator's parameters in its phase and only the generator's
  in its phase;
- the discriminator's loss sends no gradient to the generator; the generator's loss is computed
  with the current discriminator;
- n_critic is honoured; weight clipping keeps every critic weight in range.
"""

from __future__ import annotations

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen import Trainer, TrainerConfig
from unigen.errors import UnsupportedOperation

GAN_IDS = ["gan", "wgan", "wgan-gp", "stylegan"]
DATA = {"image": "digits", "vector": "moons"}


def _tiny(model_id: str, kind: str | None = None, seed: int = 0, **changes):
    """A small model of ``model_id`` on its first data kind (or ``kind``), and that dataset."""
    spec = unigen.default_host().models[model_id]
    data = unigen.load_dataset(DATA[kind or spec.model_cls.data_kinds[0]])
    config = attrs.evolve(spec.model_cls.example_config(data.info, None), **changes)
    torch.manual_seed(seed)
    return unigen.build_model(model_id, data.info, config), data


def _trainer_config(model, steps: int, **over) -> TrainerConfig:
    defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in model.trainer_defaults.items()}
    return TrainerConfig(steps=steps, batch_size=16, log_every=steps, **{**defaults, **over})


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())]


class _Recorder:
    """Wraps ``model.after_step`` (called by the trainer right after each group's optimizer step) to
    snapshot both networks after every phase."""

    def __init__(self, model) -> None:
        self.model, self.inner = model, model.after_step
        self.log: list[tuple[str, int, dict, dict]] = []
        model.after_step = self

    def __call__(self, group: str, step: int) -> None:
        self.inner(group, step)
        self.log.append((group, step, _params(self.model.discriminator), _params(self.model.generator)))


@pytest.mark.parametrize("model_id", GAN_IDS)
def test_each_phase_of_a_trainer_step_moves_only_its_own_network(model_id):
    model, data = _tiny(model_id, n_critic=1)
    d0, g0 = _params(model.discriminator), _params(model.generator)
    rec = _Recorder(model)
    Trainer(model, data, _trainer_config(model, steps=1), quiet=True).fit()
    assert [entry[:2] for entry in rec.log] == [(model.critic_group, 0), ("generator", 0)]
    (_, _, d1, g1), (_, _, d2, g2) = rec.log
    # the discriminator's phase: D moved, G did not
    assert any(not torch.equal(d0[n], d1[n]) for n in d0)
    assert all(torch.equal(g0[n], g1[n]) for n in g0)
    # the generator's phase: G moved, D did not
    assert any(not torch.equal(g1[n], g2[n]) for n in g1)
    assert all(torch.equal(d1[n], d2[n]) for n in d1)


@pytest.mark.parametrize("model_id", GAN_IDS)
def test_discriminator_loss_sends_no_gradient_to_the_generator(model_id):
    model, data = _tiny(model_id)
    batch = data.batch(slice(0, 8))
    g_params = list(model.generator.parameters())
    d_loss = model.loss(batch, group=model.critic_group)
    assert all(g is None for g in torch.autograd.grad(d_loss, g_params, allow_unused=True))
    g_loss = model.loss(batch, group="generator")
    grads = torch.autograd.grad(g_loss, g_params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_generator_loss_is_computed_with_the_current_critic():
    """L_G = -E f(G(z)): raising the critic's output bias by delta lowers L_G by exactly delta."""
    model, data = _tiny("wgan", kind="vector")
    batch = data.batch(slice(0, 8))
    torch.manual_seed(1)
    before = model.loss(batch, group="generator").item()
    with torch.no_grad():
        model.discriminator.net[-1].bias.add_(0.75)
    torch.manual_seed(1)
    after = model.loss(batch, group="generator").item()
    assert after == pytest.approx(before - 0.75, abs=1e-5)


@given(n_critic=st.integers(1, 6), steps=st.integers(1, 20))
def test_active_groups_follow_n_critic(n_critic, steps):
    model, _ = _tiny("wgan", kind="vector", n_critic=n_critic)
    schedule = [model.active_groups(s) for s in range(steps)]
    assert all(groups[0] == "critic" for groups in schedule)
    gen_steps = [s for s, groups in enumerate(schedule) if "generator" in groups]
    assert gen_steps == [s for s in range(steps) if (s + 1) % n_critic == 0]
    assert all(groups == ("critic", "generator") for s, groups in enumerate(schedule) if s in gen_steps)


@pytest.mark.parametrize("model_id,n_critic", [("wgan", 5), ("wgan-gp", 3), ("gan", 2)])
def test_trainer_honours_n_critic(model_id, n_critic):
    model, data = _tiny(model_id, kind="vector", n_critic=n_critic)
    rec = _Recorder(model)
    Trainer(model, data, _trainer_config(model, steps=2 * n_critic), quiet=True).fit()
    order = [(group, step) for group, step, *_ in rec.log]
    critic = model.critic_group
    expected = []
    for s in range(2 * n_critic):
        expected.append((critic, s))
        if (s + 1) % n_critic == 0:
            expected.append(("generator", s))
    assert order == expected


@given(clip=st.floats(0.001, 0.2), kind=st.sampled_from(["vector", "image"]))
def test_weight_clipping_keeps_every_critic_weight_in_range(clip, kind):
    model, data = _tiny("wgan", kind=kind, clip=clip, n_critic=2)
    with torch.no_grad():  # start far outside the box, so clipping has work to do
        for p in model.discriminator.parameters():
            p.uniform_(-1, 1)
    rec = _Recorder(model)
    Trainer(model, data, _trainer_config(model, steps=2, lr=1e-2), quiet=True).fit()
    for group, _, d, _ in rec.log:
        if group == "critic":
            assert all(w.abs().max() <= clip for w in d.values())
    # clipping is w <- clip(w, -c, c): the weights that started outside now sit on the boundary
    assert max(w.abs().max() for w in rec.log[-1][2].values()) == pytest.approx(clip)


@pytest.mark.parametrize("model_id", GAN_IDS)
def test_forward_and_logprob_say_why_they_are_unsupported(model_id):
    model, data = _tiny(model_id)
    x = data.batch(slice(0, 2)).x
    with pytest.raises(UnsupportedOperation, match="no encoder"):
        model.forward(x)
    with pytest.raises(UnsupportedOperation, match="no tractable likelihood"):
        model.logprob(x)
    assert type(model).logprob_kind == "none"


@pytest.mark.parametrize("model_id", GAN_IDS)
def test_reverse_takes_a_latent_of_the_latent_shape(model_id):
    model, data = _tiny(model_id)
    model.eval()
    z = torch.randn(3, model.z_dim)
    with torch.no_grad():
        x = model.reverse(z)
    assert x.shape == (3, *data.info.shape)
    with pytest.raises(ValueError, match="expects z of shape"):
        model.reverse(torch.randn(3, *data.info.shape))


@pytest.mark.parametrize("model_id", GAN_IDS)
def test_per_group_learning_rates_reach_the_optimizers(model_id):
    model, data = _tiny(model_id, lr_discriminator=3e-4, lr_generator=1e-4)
    trainer = Trainer(model, data, _trainer_config(model, steps=1), quiet=True)
    assert trainer.optimizers[model.critic_group].param_groups[0]["lr"] == 3e-4
    assert trainer.optimizers["generator"].param_groups[0]["lr"] == 1e-4
    kind = type(trainer.optimizers["generator"]).__name__.lower()
    assert kind == model.trainer_defaults.get("optimizer", "adam")


def test_unknown_group_is_refused_with_the_known_ones():
    model, data = _tiny("gan")
    with pytest.raises(ValueError, match="discriminator, generator"):
        model.loss(data.batch(slice(0, 4)), group="critic")


@pytest.mark.parametrize("model_id,field,value", [
    ("wgan", "clip", 0.0), ("wgan", "n_critic", 0), ("wgan-gp", "gp_weight", -1.0), ("stylegan", "truncation", -0.5),
    ("stylegan", "mixing_prob", 1.5), ("gan", "lr_generator", 0.0), ("gan", "z_dim", 0),
])
def test_bad_config_values_name_the_field(model_id, field, value):
    with pytest.raises(unigen.ConfigError, match=field):
        unigen.model_config(model_id, {field: value})
