"""Architectures follow the data's resolution: the rule in unigen.nn.blocks and each family's use
of it; the defaults tuned on 8x8 digits and 28x28 images stay as they were."""

from __future__ import annotations

import attrs
import pytest
import torch

import unigen
from unigen.model import DataInfo
from unigen.nn.blocks import level_channels, resolution_levels, unet_mults

HOST = unigen.default_host()


def info(c: int, size: int) -> DataInfo:
    return DataInfo(name=f"img{size}", shape=(c, size, size), kind="image", levels=256, num_classes=None)


def test_the_rule():
    assert [resolution_levels(s, 2) for s in (8, 28, 32, 64, 128)] == [2, 2, 3, 4, 5]
    assert [resolution_levels(s, 3) for s in (8, 28, 32, 64)] == [3, 3, 3, 4]
    assert unet_mults(8, (1, 2)) == (1, 2) and unet_mults(32, (1, 2)) == (1, 2, 2)
    assert unet_mults(64, (1, 2, 2)) == (1, 2, 2, 2)
    assert level_channels(32, 4) == [32, 64, 128, 256] and level_channels(32, 5) == [32, 64, 128, 256, 256]


def build(model_id: str, data: DataInfo, **config):
    if model_id not in HOST.models:
        pytest.skip(f"{model_id} is not installed")
    spec = HOST.models[model_id]
    torch.manual_seed(0)
    return unigen.build_model(model_id, data, attrs.evolve(spec.model_cls.Config(), **config))


def shapes_of(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("model_id", "old"), [
    ("ddpm", {"mults": (1, 2)}), ("score-sde", {"mults": (1, 2)}), ("realnvp", {"scales": 2}),
    ("pixelcnn", {"layers": 5}),
])
@pytest.mark.parametrize("size", [8, 28])
def test_small_images_keep_the_defaults_they_were_tuned_on(model_id, old, size):
    data = info(1, size)
    assert shapes_of(build(model_id, data)) == shapes_of(build(model_id, data, **old))


@pytest.mark.parametrize(("model_id", "depth"), [
    ("ddpm", lambda m: len(m.net.down)), ("score-sde", lambda m: len(m.net.down)),
    ("flow-matching", lambda m: len(m.field.unet.down) if hasattr(m, "field") else None),
    ("realnvp", lambda m: sum(m.splits) + 1), ("pixelcnn", lambda m: len(m.stacks)),
])
def test_larger_images_get_deeper_networks(model_id, depth):
    small, big = build(model_id, info(3, 8)), build(model_id, info(3, 64))
    if depth(small) is None:
        pytest.skip("no such attribute")
    assert depth(big) > depth(small)


def test_conv_stacks_stop_widening_at_8x_and_patches_keep_an_8x8_grid():
    vae = build("vae", info(3, 64))
    widest = max(m.out_channels for m in vae.modules() if isinstance(m, torch.nn.Conv2d))
    assert widest <= 8 * vae.config.width * 2  # the decoder's head doubles for mean and scale
    gan = build("gan", info(3, 64))
    assert max(m.out_channels for m in gan.modules() if isinstance(m, torch.nn.Conv2d)) <= 8 * gan.config.width
    if "jepa" in HOST.models:
        assert build("jepa", info(3, 64)).p == 8 and build("jepa", info(3, 32)).p == 4
        assert build("jepa", info(1, 28)).p == 4 and build("jepa", info(1, 8)).p == 2
