"""The contract every registered model passes, parametrized over the registry.

Models declare what they support (``logprob_kind``, ``data_kinds``, ``example_config``); this test
never asks which model it is testing.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import torch

import unigen
from unigen import config as cfg
from unigen import ops
from unigen.errors import UnsupportedOperation
from unigen.testing import example_config
from unigen.trainer import Trainer, TrainerConfig

HOST = unigen.default_host()
MODEL_IDS = list(HOST.models)
DATA_FOR_KIND = {"image": "digits", "vector": "moons", "text-image": "digits-captions"}
# Every model that takes images also runs on colour: the procedural shapes at 3x32x32.
COLOUR_FOR_KIND = {"image": "shapes", "text-image": "shapes-captions"}
COLOUR_IDS = [m for m in MODEL_IDS if set(HOST.models[m].model_cls.data_kinds) & set(COLOUR_FOR_KIND)]


def _dataset(spec) -> unigen.Dataset:
    kind = spec.model_cls.data_kinds[0]
    return unigen.load_dataset(DATA_FOR_KIND.get(kind, "digits"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """model id -> (dataset, config); example configs may train a tiny helper run once."""
    cache: dict[str, tuple] = {}

    def get(model_id: str):
        if model_id not in cache:
            spec = HOST.models[model_id]
            data = _dataset(spec)
            work = tmp_path_factory.mktemp(model_id)
            try:  # the kit trains the runs the model builds on (needs_runs) first
                cache[model_id] = (data, example_config(spec.model_cls, data.info, work, host=HOST))
            except unigen.UnigenError as exc:  # e.g. ldm without the vae family installed
                pytest.skip(str(exc))
        return cache[model_id]

    return get


def _build(model_id, built, seed=0):
    data, config = built(model_id)
    torch.manual_seed(seed)
    return data, unigen.build_model(model_id, data.info, config)


def _call(op, *args):
    """Run an operation; an UnsupportedOperation must name the model and say why."""
    try:
        return op(*args)
    except UnsupportedOperation as exc:
        assert "does not support" in str(exc) and len(str(exc)) > 30
        return None


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_config_round_trips_through_json_and_toml(model_id, built):
    _, config = built(model_id)
    values = cfg.to_dict(config)
    cls = type(config)
    assert cfg.from_dict(cls, json.loads(json.dumps(values))) == config
    assert cfg.from_toml(cls, cfg.to_toml({k: v for k, v in values.items() if v is not None})) == config


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_unknown_config_key_is_refused_with_its_name(model_id):
    spec = HOST.models[model_id]
    with pytest.raises(unigen.ConfigError, match="no_such_key"):
        cfg.from_dict(spec.model_cls.Config, {"no_such_key": 1})


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_five_operations_have_the_right_shapes(model_id, built):
    data, model = _build(model_id, built)
    model.eval()
    batch = data.batch(slice(0, 4))
    shape = tuple(data.info.shape)
    with torch.no_grad():
        x = _call(ops.sample, model, 3, None)
        if x is not None:
            assert tuple(x.shape) == (3, *shape) and torch.isfinite(x).all()
        lp = _call(ops.logprob, model, batch.x)
        if lp is not None:
            assert lp.shape == (4,) and torch.isfinite(lp).all()
            assert type(model).logprob_kind != "none"
        else:
            assert type(model).logprob_kind == "none"
        _call(ops.forward, model, batch.x, torch.full((4,), 0.5))
    loss = ops.loss(model, batch)
    values = loss.values() if isinstance(loss, dict) else [loss]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in values)


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_seeded_builds_and_losses_are_reproducible(model_id, built):
    data, a = _build(model_id, built, seed=3)
    _, b = _build(model_id, built, seed=3)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
    batch = data.batch(slice(0, 8))
    torch.manual_seed(5)
    la = ops.loss(a, batch)
    torch.manual_seed(5)
    lb = ops.loss(b, batch)
    la = la if isinstance(la, dict) else {"main": la}
    lb = lb if isinstance(lb, dict) else {"main": lb}
    assert {k: float(v) for k, v in la.items()} == {k: float(v) for k, v in lb.items()}


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_training_step_then_checkpoint_round_trip(model_id, built, tmp_path: Path):
    data, model = _build(model_id, built)
    config = TrainerConfig(steps=2, batch_size=16, log_every=1, **{
        k: tuple(v) if isinstance(v, list) else v for k, v in type(model).trainer_defaults.items()
        if k in ("lr", "betas", "optimizer")})
    run = tmp_path / "run"
    last = Trainer(model, data, config, run_dir=run, quiet=True).fit()
    assert all(torch.isfinite(torch.tensor(v)) for k, v in last.items() if k.startswith("loss/"))
    for p in model.parameters():
        assert torch.isfinite(p).all()
    loaded = unigen.load_run(run, ema=False).model
    for (n1, t1), (n2, t2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(t1.cpu(), t2.cpu()), n1


@pytest.mark.parametrize("model_id", COLOUR_IDS)
def test_image_model_trains_and_samples_in_colour_at_32x32(model_id, tmp_path: Path):
    """Built from the data alone (example config), a training step on 3x32x32 stays finite and
    samples come out as (3, 32, 32)."""
    spec = HOST.models[model_id]
    kind = next(k for k in spec.model_cls.data_kinds if k in COLOUR_FOR_KIND)
    full = unigen.load_dataset(COLOUR_FOR_KIND[kind])
    data = attrs.evolve(full, x=full.raw[:64], y=full.y[:64], text=None if full.text is None else full.text[:64])
    assert data.info.shape == (3, 32, 32)
    try:  # the kit trains the runs the model builds on (on this data) first
        config = example_config(spec.model_cls, data.info, tmp_path, host=HOST)
    except unigen.UnigenError as exc:
        pytest.skip(str(exc))
    torch.manual_seed(0)
    model = unigen.build_model(model_id, data.info, config)
    trainer = TrainerConfig(steps=2, batch_size=8, log_every=1, **{
        k: tuple(v) if isinstance(v, list) else v for k, v in type(model).trainer_defaults.items()
        if k in ("lr", "betas", "optimizer")})
    last = Trainer(model, data, trainer, quiet=True).fit()
    assert all(torch.isfinite(torch.tensor(v)) for k, v in last.items() if k.startswith("loss/"))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        x = _call(ops.sample, model, 1, None)
    if x is not None:
        assert tuple(x.shape) == (1, 3, 32, 32) and torch.isfinite(x).all()
