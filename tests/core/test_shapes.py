"""The built-in procedural colour data set (``shapes``, ``shapes-64``)."""

from __future__ import annotations

import torch

import unigen
from unigen.data import shapes


def test_shapes_are_registered_deterministic_rgb_images_with_shape_labels():
    train = unigen.load_dataset("shapes")
    assert train.info.shape == (3, 32, 32) and train.info.levels == 256 and train.info.num_classes == 4
    assert len(train) == shapes.N["train"] and len(unigen.load_dataset("shapes", "test")) == shapes.N["test"]
    assert train.x.min() >= -1 and train.x.max() <= 1
    # a fresh render of the same factors gives the same bytes (deterministic from the seed)
    f = {k: v[:64] for k, v in shapes.draw_factors(shapes.N["train"], shapes.SEEDS["train"]).items()}
    assert torch.equal(torch.from_numpy(shapes.render(f, 32)), shapes.images_uint8("train", 32)[:64])
    assert torch.equal(train.y, shapes.factors("train")["shape"])
    # every class is present, and the anti-aliased edges use many of the 256 levels
    assert train.y.bincount().min() > 0.2 * len(train)
    assert len(torch.unique(shapes.images_uint8("train", 32)[:500])) > 100
    # colour: the brightest pixel of an image matches its colour factor's RGB
    colours = torch.tensor(list(shapes.COLOURS.values()))
    img = shapes.images_uint8("train", 32)[:200].long()
    brightest = img.flatten(2).gather(2, img.sum(1).flatten(1).argmax(1)[:, None, None].expand(-1, 3, 1))[..., 0]
    assert torch.equal(brightest, colours[shapes.factors("train")["colour"][:200]])


def test_shapes_factors_are_visible_in_the_pixels():
    img = shapes.images_uint8("test", 32).float()
    f = shapes.factors("test", 32)
    area = (img.sum(1) > 3 * 40).flatten(1).sum(1).float()  # foreground pixels per image
    # larger scale -> larger area, for every shape
    for k in range(len(shapes.SHAPES)):
        means = [area[(f["shape"] == k) & (f["scale"] == s)].mean() for s in range(len(shapes.SCALES))]
        assert all(a < b for a, b in zip(means, means[1:])), (shapes.SHAPES[k], means)
    # the centre of mass follows the x factor
    fg = (img.sum(1) > 3 * 40).float()  # (N, H, W)
    cx = (fg.sum(1) * torch.arange(32.0)).sum(1) / fg.sum((1, 2))
    assert torch.corrcoef(torch.stack([cx, f["x"].float()]))[0, 1] > 0.95


def test_shapes_64_shows_the_same_scenes_at_twice_the_size():
    big = unigen.load_dataset("shapes-64", "test")
    small = unigen.load_dataset("shapes", "test")
    assert big.info.shape == (3, 64, 64) and torch.equal(big.y, small.y)
    pooled = torch.nn.functional.avg_pool2d(big.x[:100], 2)
    assert (pooled - small.x[:100]).abs().mean() < 0.05
