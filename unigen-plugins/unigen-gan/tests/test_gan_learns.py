"""It learns: short real training runs with the generic trainer, against the untrained model."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

import unigen
from unigen.data.toy import sample_toy
from unigen.metrics.mmd import mmd2
from unigen.testing import quick_train, untrained

pytestmark = pytest.mark.slow
DIGIT_SCALES = (2.0, 4.0, 8.0)  # pairwise distances between 8x8 digits in [-1, 1] are ~6


def _samples(model, n: int, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.sample(n)


def test_wgan_gp_learns_moons():
    """Far closer to the data than a standard normal is, by MMD (and than the untrained generator).

    The toy settings are those of the paper's own 2-D experiments (gan_toy.py of Gulrajani et al.):
    lambda = 0.1 ("smaller lambda seems to help for toy tasks"), Adam betas (0.5, 0.9), with the
    learning rate decayed linearly to zero as in their image experiments. Measured over seeds 0-3:
    MMD^2 0.005-0.012 after 3000 steps, against 0.123 for N(0, I) and about 0.037 for a 4-component
    Gaussian mixture fitted to moons, the bar here (a mixture met the old bar of 0.25 N(0, I)).
    """
    from sklearn.mixture import GaussianMixture

    ref = sample_toy("moons", 1000, seed=7)
    torch.manual_seed(0)
    normal = float(mmd2(torch.randn(1000, 2), ref))
    gmm = GaussianMixture(4, random_state=0).fit(sample_toy("moons", 5000, seed=1).numpy())
    mixture = float(mmd2(torch.tensor(gmm.sample(1000)[0], dtype=torch.float32), ref))
    sets = ["z_dim=2", "hidden=128", "gp_weight=0.1"]
    before = float(mmd2(_samples(untrained("wgan-gp", "moons", overrides=sets), 1000), ref))
    model = quick_train("wgan-gp", "moons", steps=3000, batch_size=256, overrides=sets,
                        trainer={"lr": 5e-4, "betas": (0.5, 0.9), "lr_schedule": "linear"})
    after = float(mmd2(_samples(model, 1000), ref))
    assert after < 0.25 * normal and after < 0.5 * mixture, (after, mixture)
    assert after < 0.05 * before


def test_gan_generates_recognisable_digits():
    from sklearn.linear_model import LogisticRegression

    train, test = unigen.load_dataset("digits"), unigen.load_dataset("digits", "test")
    clf = LogisticRegression(max_iter=2000, C=0.5).fit(train.x.flatten(1).numpy(), train.y.numpy())
    before = float(mmd2(_samples(untrained("gan", train, overrides=["width=16"]), 500), test.x, DIGIT_SCALES))
    model = quick_train("gan", train, steps=600, overrides=["width=16"])
    x = _samples(model, 500)
    after = float(mmd2(x, test.x, DIGIT_SCALES))
    assert after < 0.02 * before
    probs = clf.predict_proba(x.flatten(1).numpy())
    classes = np.bincount(probs.argmax(1), minlength=10)
    assert (probs.max(1) > 0.5).mean() > 0.6  # most samples read clearly as one digit
    assert (classes > 10).sum() >= 8  # and the samples cover the digits, not one mode


def test_stylegan_trains_on_digits_and_truncation_reduces_variance():
    test = unigen.load_dataset("digits", "test")
    sets = ["width=16"]
    before = float(mmd2(_samples(untrained("stylegan", "digits", overrides=sets), 500), test.x, DIGIT_SCALES))
    model = quick_train("stylegan", "digits", steps=300, overrides=sets)
    after = float(mmd2(_samples(model, 500), test.x, DIGIT_SCALES))
    assert after < 0.4 * before
    spread = {}
    for psi in (1.0, 0.7, 0.3):
        model.config = attrs.evolve(model.config, truncation=psi)  # what `--set truncation=psi` does
        spread[psi] = float(_samples(model, 500).var(0).sum())
    assert spread[0.3] < spread[0.7] < spread[1.0]
    assert spread[0.3] < 0.7 * spread[1.0]
