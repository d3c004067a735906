"""The generic trainer: parameter groups, EMA, divergence, checkpoints, exact resume."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
import torch
from torch import nn

import unigen
from unigen import checkpoint as ck
from unigen.errors import CheckpointError, CheckpointWriteError, TrainingDiverged
from unigen.trainer import Trainer, TrainerConfig

VEC = unigen.DataInfo(name="t", shape=(2,), kind="vector")


def _data(n=256, seed=0) -> unigen.Dataset:
    g = torch.Generator().manual_seed(seed)
    return unigen.Dataset(info=VEC, x=torch.randn(n, 2, generator=g))


@attrs.frozen(kw_only=True)
class TwoCfg:
    nan_at: int = -1


class TwoGroups(unigen.GenerativeModel):
    """Both losses depend on both groups; the trainer must still step only one group at a time."""

    family = "test"
    Config = TwoCfg

    def __init__(self, config, data):
        super().__init__(config, data)
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self.after = []

    def parameter_groups(self):
        return {"a": list(self.a.parameters()), "b": list(self.b.parameters())}

    def loss(self, batch, group=None):
        out = self.b(self.a(batch.x)).pow(2).mean()
        if self.config.nan_at >= 0 and int(self.steps_seen) >= self.config.nan_at:
            out = out * float("nan")
        return {"a": out, "b": -out} if group is None else (out if group == "a" else -out)

    def active_groups(self, step):
        return ("a", "b") if step % 3 == 2 else ("a",)  # like n_critic = 2

    def after_step(self, group, step):
        self.after.append((group, step))
        if group == "a":
            self.steps_seen += 1


def _snapshot(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_each_optimizer_step_changes_only_its_own_group():
    model = TwoGroups(TwoCfg(), VEC)
    trainer = Trainer(model, _data(), TrainerConfig(steps=1, batch_size=32), quiet=True)
    before = _snapshot(model)
    trainer.fit()  # step 0: only group "a" is active
    after = _snapshot(model)
    assert not torch.equal(before["a.weight"], after["a.weight"])
    assert torch.equal(before["b.weight"], after["b.weight"])


def test_active_groups_and_after_step_are_honoured():
    model = TwoGroups(TwoCfg(), VEC)
    Trainer(model, _data(), TrainerConfig(steps=6, batch_size=32), quiet=True).fit()
    assert model.after == [("a", 0), ("a", 1), ("a", 2), ("b", 2), ("a", 3), ("a", 4), ("a", 5), ("b", 5)]


class ConstantB(TwoGroups):
    def loss(self, batch, group=None):
        if group == "b":  # 3.0 at every one of b's steps, with a gradient into b
            return self.b.weight.sum() * 0 + 3.0
        return super().loss(batch, group)


def test_each_group_loss_is_averaged_over_the_steps_that_group_took():
    model = ConstantB(TwoCfg(), VEC)
    record = Trainer(model, _data(), TrainerConfig(steps=6, batch_size=32, log_every=6), quiet=True).fit()
    assert record["loss/b"] == pytest.approx(3.0)  # b stepped at 2 of the 6 steps; not 3.0 * 2 / 6


def test_ema_weights_follow_the_ema_rule(tmp_path):
    """e <- d_t e + (1 - d_t) w with d_t = min(decay, (1 + t) / (10 + t)) after t steps."""
    torch.manual_seed(0)
    model = TwoGroups(TwoCfg(), VEC)
    decay = 0.9
    trainer = Trainer(model, _data(), TrainerConfig(steps=3, batch_size=32, ema_decay=decay), quiet=True)
    expected = {k: v.clone().float() for k, v in model.state_dict().items()}
    trainer.config = attrs.evolve(trainer.config, steps=1)
    for step in range(3):
        trainer.config = attrs.evolve(trainer.config, steps=step + 1)
        trainer.fit()
        d = min(decay, (1 + step) / (10 + step))  # the warm-up: 0.1, 0.18, 0.25 here
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                expected[k] = d * expected[k] + (1 - d) * v
    for (k, v), e in zip(model.state_dict().items(), trainer.ema):
        if v.is_floating_point():
            assert torch.allclose(e, expected[k], atol=1e-6), k


class ScaleByStd(unigen.GenerativeModel):
    """Like LDM: a buffer set from the first training batch (Rombach et al.'s scale_by_std)."""

    family = "test"
    Config = TwoCfg

    def __init__(self, config, data):
        super().__init__(config, data)
        self.net = nn.Linear(2, 2)
        self.register_buffer("latent_scale", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def loss(self, batch, group=None):
        if self.latent_scale == 0:
            self.latent_scale.fill_(float(batch.x.std()) + 2.0)
        self.seen += 1
        return (self.net(batch.x / self.latent_scale) - batch.x).pow(2).mean()


class WithBatchNorm(ScaleByStd):
    def __init__(self, config, data):
        super().__init__(config, data)
        self.norm = nn.BatchNorm1d(2)

    def loss(self, batch, group=None):
        return super().loss(batch, group) + self.norm(batch.x + 3).pow(2).mean()


def test_ema_averages_parameters_and_copies_buffers():
    torch.manual_seed(0)
    model = ScaleByStd(TwoCfg(), VEC)
    trainer = Trainer(model, _data(), TrainerConfig(steps=20, batch_size=32, ema_decay=0.995), quiet=True)
    trainer.fit()
    ema = dict(zip(model.state_dict(), trainer.ema))
    assert float(model.latent_scale) > 2 and torch.equal(ema["latent_scale"], model.latent_scale)
    assert torch.equal(ema["seen"], model.seen)
    assert not torch.equal(ema["net.weight"], model.net.weight)  # parameters are still averaged


def test_a_model_can_mark_buffers_to_average_and_batchnorm_statistics_are():
    torch.manual_seed(0)
    model = WithBatchNorm(TwoCfg(), VEC)
    assert model.ema_buffers() == {"norm.running_mean", "norm.running_var"}
    decay = 0.9
    trainer = Trainer(model, _data(), TrainerConfig(steps=1, batch_size=32, ema_decay=decay), quiet=True)
    before = model.norm.running_mean.clone()
    trainer.fit()
    ema = dict(zip(model.state_dict(), trainer.ema))
    d = min(decay, 1 / 10)  # the first step's warm-up decay
    want = d * before + (1 - d) * model.norm.running_mean
    assert torch.allclose(ema["norm.running_mean"], want) and not torch.equal(want, model.norm.running_mean)
    assert torch.equal(ema["latent_scale"], model.latent_scale)  # not marked: copied
    assert torch.equal(ema["norm.num_batches_tracked"], model.norm.num_batches_tracked)


def test_the_trainer_uses_only_public_torch_api():
    import ast
    import inspect

    from unigen import trainer

    tree = ast.parse(inspect.getsource(trainer))
    private = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute)
               and ast.unparse(n.value).startswith("torch") and n.attr.startswith("_")]
    private += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("torch")
                and any(part.startswith("_") for part in n.module.split("."))]
    assert not private, private


class Told(ScaleByStd):
    def __init__(self, config, data):
        super().__init__(config, data)
        self.told = []

    def on_train_start(self, total_steps, step):
        self.told.append((total_steps, step))


def test_the_model_is_told_the_runs_length_at_the_start_and_after_a_resume(tmp_path):
    cfg = TrainerConfig(steps=6, batch_size=32, checkpoint_every=4)
    first = Told(TwoCfg(), VEC)
    Trainer(first, _data(), attrs.evolve(cfg, steps=4), run_dir=tmp_path, quiet=True).fit()
    again = Told(TwoCfg(), VEC)
    trainer = Trainer(again, _data(), cfg, run_dir=tmp_path, quiet=True)
    assert trainer.resume()
    trainer.fit()
    assert first.told == [(4, 0)] and again.told == [(6, 4)]


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    model = TwoGroups(TwoCfg(nan_at=25), VEC)
    cfg = TrainerConfig(steps=100, batch_size=32, checkpoint_every=10, log_every=10)
    with pytest.raises(TrainingDiverged, match="NaN/inf at step 25.*last good checkpoint: .*step_00000020"):
        Trainer(model, _data(), cfg, run_dir=tmp_path, quiet=True).fit()
    latest = ck.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000020"
    tensors = ck.load_weights(latest / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def _vae_trainer(run_dir, steps, every=5, seed=0):
    data = unigen.load_dataset("digits")
    torch.manual_seed(seed)
    model = unigen.build_model("vae", data.info, {"z_dim": 4, "width": 8})
    cfg = TrainerConfig(steps=steps, batch_size=32, checkpoint_every=every, log_every=5, seed=seed, ema_decay=0.9)
    return Trainer(model, data, cfg, run_dir=run_dir, quiet=True)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    full = _vae_trainer(tmp_path / "full", 20)
    full.fit()
    part = _vae_trainer(tmp_path / "part", 10)
    part.fit()
    torch.manual_seed(999)  # disturb the global RNG: resume must restore it
    resumed = _vae_trainer(tmp_path / "part", 20, seed=0)
    assert resumed.resume() and resumed.step == 10
    resumed.fit()
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(full.ema, resumed.ema):
        assert torch.equal(a, b)
    sa = full.optimizers["main"].state_dict()["state"]
    sb = resumed.optimizers["main"].state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_a_failure_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    good = _run_with_checkpoint(tmp_path)
    trainer = _vae_trainer(tmp_path, 5)
    trainer.step = 10
    real_replace = os.replace

    def failing(src, dst):
        if "step_00000010" in str(dst):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(CheckpointWriteError, match="cannot write checkpoint step_00000010.*disk full"):
        trainer.save_checkpoint()
    monkeypatch.setattr(os, "replace", real_replace)
    assert ck.latest_checkpoint(tmp_path) == good
    assert unigen.load_run(tmp_path).checkpoint == good


def test_old_checkpoints_are_rotated(tmp_path):
    trainer = _vae_trainer(tmp_path, 30, every=5)
    trainer.config = attrs.evolve(trainer.config, keep_checkpoints=2)
    trainer.fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_00000025", "step_00000030"]


def _run_with_checkpoint(tmp_path: Path) -> Path:
    trainer = _vae_trainer(tmp_path, 5)
    trainer.fit()  # writes run.json too
    return ck.latest_checkpoint(tmp_path)


def test_truncated_weights_are_one_clear_error(tmp_path):
    latest = _run_with_checkpoint(tmp_path)
    path = latest / "ema.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read weights") as info:
        unigen.load_run(tmp_path)
    assert "\n" not in str(info.value)


def test_a_crafted_pickle_is_never_executed(tmp_path):
    import pickle

    latest = _run_with_checkpoint(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"step": Evil()}, latest / "state.pt", pickle_module=pickle)
    with pytest.raises(CheckpointError, match="cannot read trainer state"):
        ck.load_state(latest / "state.pt")
    assert not (tmp_path / "pwned").exists()


def test_weights_of_the_wrong_shape_are_refused_with_the_key(tmp_path):
    latest = _run_with_checkpoint(tmp_path)
    from safetensors.torch import save_file

    tensors = ck.load_weights(latest / "ema.safetensors")
    key = next(iter(tensors))
    tensors[key] = torch.zeros(3, 3, 3)
    save_file(tensors, str(latest / "ema.safetensors"))
    with pytest.raises(CheckpointError, match=f"{key!r} has shape"):
        unigen.load_run(tmp_path)
