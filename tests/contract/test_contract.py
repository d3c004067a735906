"""The contract over every installed model id, through the kit plugin authors use (:mod:`unigen.testing`),
and, for this repository's image models, colour images at 3x32x32.

In a family session only that family is installed, so this runs its ids alone.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch

import unigen
from unigen import ops
from unigen.errors import UnsupportedOperation
from unigen.testing import contract_tests, example_config
from unigen.trainer import Trainer, TrainerConfig

HOST = unigen.default_host()
MODEL_IDS = list(HOST.models)

TestContract = contract_tests()

# Every model that takes images also runs on colour: the procedural shapes at 3x32x32.
COLOUR_FOR_KIND = {"image": "shapes", "text-image": "shapes-captions"}
COLOUR_IDS = [m for m in MODEL_IDS if set(HOST.models[m].model_cls.data_kinds) & set(COLOUR_FOR_KIND)]


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
        k: tuple(v) if isinstance(v, list) else v for k, v in model.trainer_defaults.items()
        if k in ("lr", "betas", "optimizer")})
    last = Trainer(model, data, trainer, quiet=True).fit()
    assert all(torch.isfinite(torch.tensor(v)) for k, v in last.items() if k.startswith("loss/"))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model.eval()
    try:
        with torch.no_grad():
            x = ops.sample(model, 1, None)
    except UnsupportedOperation:
        return
    assert tuple(x.shape) == (1, 3, 32, 32) and torch.isfinite(x).all()
