"""FID, KID and precision/recall on unlabelled images: the self-supervised evaluator, its cache key
(the data's content, never its name alone) and `unigen eval` with no labels present."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unigen.cli import main
from unigen.data import Dataset, shapes
from unigen.metrics import contrastive, scores
from unigen.metrics import evaluator as ev
from unigen.model import DataInfo


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "evaluators"


def small_shapes(split: str, size: int, start: int = 0, n: int = 512) -> np.ndarray:
    """Colour shapes shrunk to ``size`` px: uint8 (n, 3, size, size)."""
    x = shapes.images_uint8(split, 32)[start : start + n].float()
    return torch.nn.functional.avg_pool2d(x, 32 // size).round().to(torch.uint8).numpy()


def unlabelled(images: np.ndarray, name: str = "mine") -> Dataset:
    c, h, w = images.shape[1:]
    return Dataset(info=DataInfo(name=name, shape=(c, h, w), kind="image", levels=256), x=torch.from_numpy(images))


def test_the_cache_is_keyed_by_content_and_settings_not_by_name(cache, monkeypatch):
    trained = []
    real = contrastive.train_contrastive
    monkeypatch.setattr(contrastive, "train_contrastive", lambda *a, **k: trained.append(1) or real(*a, **k))
    a = unlabelled(small_shapes("train", 8, 0, 256))
    b = unlabelled(small_shapes("train", 8, 256, 256))  # the same name, other images
    ea, eb = ev.data_evaluator(a, None, steps=3), ev.data_evaluator(b, None, steps=3)
    assert len(trained) == 2 and len(list(cache.glob("*.safetensors"))) == 2
    again = ev.data_evaluator(unlabelled(small_shapes("train", 8, 0, 256)), None, steps=3)
    assert len(trained) == 2  # the same content: read back from the cache, not trained again
    x = a.x[:16]
    assert torch.equal(ea(x)[0], again(x)[0]) and not torch.equal(ea(x)[0], eb(x)[0])
    ev.data_evaluator(a, None, steps=4)  # other settings: another evaluator
    ev.data_evaluator(a, None, steps=3, seed=1)
    assert len(trained) == 4 and len(list(cache.glob("*.safetensors"))) == 4
    # labels make it a classifier (with class probabilities) under yet another key
    labelled = Dataset(info=DataInfo(name="mine", shape=(3, 8, 8), levels=256, num_classes=4), x=a.raw,
                       y=shapes.factors("train")["shape"][:256])
    clf = ev.data_evaluator(labelled, labelled, steps=3)
    assert clf(x)[1].shape == (16, 4) and ea(x)[1] is None and len(list(cache.glob("*.safetensors"))) == 5


def test_the_self_supervised_features_learn_the_shapes(cache):
    """Trained without labels, squares and circles lie further apart in the features (FID) than two
    halves of the squares do, and much further than in the same network's features untrained."""
    train = unlabelled(small_shapes("train", 16, 0, 2000))
    e = ev.data_evaluator(train, None, steps=150)
    test = unlabelled(small_shapes("test", 16, 0, 2000)).x
    kind = shapes.factors("test")["shape"][:2000]
    torch.manual_seed(0)
    untrained = ev.Evaluator(ev.EvaluatorNet(3, 16, 16, 0), "untrained", None, has_logits=False)

    def separation(evaluator) -> float:
        f = evaluator(test)[0]
        f = f / f.pow(2).mean().sqrt()
        squares, circles = f[kind == 0], f[kind == 1]  # ~500 each: halves of equal size compared
        return scores.fid(squares[::2], circles[::2]) / scores.fid(squares[::2], squares[1::2])

    trained_sep, untrained_sep = separation(e), separation(untrained)
    # measured: 2.71 trained, 1.11 untrained (a ratio near 1: the features do not tell them apart)
    assert trained_sep > 2 and trained_sep > 1.8 * untrained_sep, (trained_sep, untrained_sep)
    # held-out real images are far closer to the training split than noise images are
    reference = e(train.x[:1000])[0]
    noise = torch.rand(1000, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert scores.fid(reference, e(test[:1000])[0]) < 0.05 * scores.fid(reference, e(noise)[0])


def test_eval_on_unlabelled_data_gives_fid_kid_pr_and_says_why_no_inception_score(tmp_path, capsys):
    """The done-means line: `unigen eval --metrics fid,kid,pr` returns numbers with no labels present."""
    data = tmp_path / "colour.npy"
    np.save(data, small_shapes("train", 8, 0, 600))
    run = tmp_path / "run"
    assert main(["train", "vae", "--data", str(data), "--steps", "30", "--batch-size", "32", "--out", str(run),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "fid,kid,is,pr", "--n", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("fid", "kid", "precision", "recall"):
        assert isinstance(out[key], float) and math.isfinite(out[key]), (key, out)
    assert out["is"] is None and "no class labels" in out["is_reason"]
    assert "self-supervised" in out["evaluator"]
