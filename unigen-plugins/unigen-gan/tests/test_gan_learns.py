"""It learns: short real training runs with the generic trainer, each against a fitted baseline that a
broken model cannot meet, and a deliberately broken variant (a mutation) that must fail the same bar.

- 2-D: MMD^2 to fresh moons below that of a 4-component Gaussian mixture fitted (scikit-learn, EM) to
  5,000 training moons (0.037; a standard normal scores 0.12, the bar a mixture met).
- 8x8 digits: pixel MMD^2 to held-out digits below that of a 4-component Gaussian mixture fitted to the
  training digits (0.026), and an independent classifier (logistic regression on the real training
  digits) reads the samples as digits of every class.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
import pytest
import torch
from torch import Tensor, nn

import unigen
from unigen.data.toy import sample_toy
from unigen.metrics.mmd import mmd2
from unigen.testing import quick_train, untrained

pytestmark = pytest.mark.slow
N = 1000
DIGIT_SCALES = (2.0, 4.0, 8.0)  # pairwise distances between 8x8 digits in [-1, 1] are ~6


def _samples(model, n: int, seed: int = 1) -> Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.sample(n)


def _train(model_id: str, data, mutate: Callable | None = None, **kwargs):
    """quick_train, on the model as built or as ``mutate`` broke it (the same seed either way)."""
    model = untrained(model_id, data, overrides=kwargs.pop("overrides", ()))
    if mutate is not None:
        mutate(model)
    return quick_train(model_id, data, model=model, **kwargs)


def blind_critic(model) -> None:
    """The mutation: the discriminator never sees the data (N(0, I) stands in for every real batch)."""
    loss = model.discriminator_loss
    model.discriminator_loss = lambda real, fake: loss(torch.randn_like(real), fake)


class _IgnoresZ(nn.Module):
    def __init__(self, g: nn.Module) -> None:
        super().__init__()
        self.g = g

    def forward(self, z: Tensor) -> Tensor:
        return self.g(torch.zeros_like(z))


def generator_ignores_z(model) -> None:
    """The mutation: the generator sees a constant latent, so it can draw one image only."""
    model.generator = _IgnoresZ(model.generator)


# -- 2-D --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fresh() -> Tensor:
    return sample_toy("moons", N, seed=7)


@pytest.fixture(scope="module")
def mixture(fresh) -> float:
    """MMD^2 of a 4-component Gaussian mixture fitted to 5,000 training moons: 0.037."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(4, random_state=0).fit(sample_toy("moons", 5000, seed=1).numpy())
    return float(mmd2(torch.tensor(gmm.sample(N)[0], dtype=torch.float32), fresh))


def test_wgan_gp_learns_moons_with_its_defaults(fresh, mixture):
    """``unigen train wgan-gp --data moons --steps 3000`` as a user runs it: pure defaults (the paper's toy
    settings on vectors, a latent of the data's size). Measured 0.006 (the CLI run: 0.006; 1.50 before the
    toy defaults, 0.019 with a 32-D latent); the bar is half the mixture's 0.037."""
    model = quick_train("wgan-gp", "moons", steps=3000, batch_size=128)
    assert float(mmd2(_samples(model, N), fresh)) < 0.5 * mixture


@pytest.mark.parametrize("mutate", [None, blind_critic], ids=["wgan", "wgan-blind-critic"])
def test_wgan_learns_moons_with_its_defaults_and_a_critic_blind_to_the_data_does_not(mutate, fresh, mixture):
    """The paper's WGAN (weight clipping at c = 0.01, n_critic = 5, RMSprop) with its defaults on vectors
    (lr 5e-4 decayed linearly; the paper's constant 5e-5, its image default, reaches 0.046 in 3,000 steps:
    between N(0, I) and the mixture). Measured 0.015 (seed 0; 0.022 seed 1) against the mixture's 0.037;
    with the critic blind to the data the generator learns the stand-in N(0, I) and must fail the same bar."""
    model = _train("wgan", "moons", mutate, steps=3000, batch_size=256)
    after = float(mmd2(_samples(model, N), fresh))
    assert (after < mixture) == (mutate is None), (after, mixture)


@pytest.mark.parametrize("overrides", [[], ["r1_gamma=0.0"]], ids=["gan", "gan-without-r1"])
def test_gan_learns_moons_in_500_steps_with_its_defaults_and_not_without_r1(overrides, fresh, mixture):
    """The GAN's defaults on vectors include R1 (gamma 1): measured 0.014/0.023 (seeds 0/1) after 500 steps
    against the mixture's 0.037. Without it (gamma 0, the former default) the same run oscillates between
    modes: 1.34."""
    model = _train("gan", "moons", steps=500, batch_size=128, overrides=overrides)
    after = float(mmd2(_samples(model, N), fresh))
    assert (after < mixture) == (not overrides), (after, mixture)


# -- 8x8 digits -------------------------------------------------------------------------------------
@attrs.frozen
class DigitBar:
    """A baseline on 8x8 digits: the classifier and the fitted mixture's pixel MMD^2."""

    test: Tensor
    classifier: object
    mixture_mmd: float

    def scores(self, x: Tensor) -> tuple[float, float, np.ndarray]:
        """(MMD^2 to held-out digits, the fraction the classifier reads with p > 0.5, samples per class)."""
        probs = self.classifier.predict_proba(x.flatten(1).numpy())
        return (float(mmd2(x, self.test, DIGIT_SCALES)), float((probs.max(1) > 0.5).mean()),
                np.bincount(probs.argmax(1), minlength=10))

    def met_by(self, x: Tensor) -> bool:
        """Below the mixture's MMD, read clearly as digits (most samples), and every class among them."""
        mmd, confident, classes = self.scores(x)
        return mmd < 0.8 * self.mixture_mmd and confident > 0.6 and bool((classes >= 0.02 * len(x)).all())


@pytest.fixture(scope="module")
def digit_bar() -> DigitBar:
    """Logistic regression on the real training digits (96% test accuracy) and a 4-component Gaussian
    mixture fitted to them: its 500 samples (clamped to [-1, 1]) score MMD^2 0.026, 88% read with
    p > 0.5, every class at least 38 times."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.mixture import GaussianMixture

    train, test = unigen.load_dataset("digits"), unigen.load_dataset("digits", "test")
    flat = train.x.flatten(1).numpy()
    clf = LogisticRegression(max_iter=2000, C=0.5).fit(flat, train.y.numpy())
    gmm = GaussianMixture(4, random_state=0).fit(flat)
    x = torch.tensor(gmm.sample(500)[0], dtype=torch.float32).clamp(-1, 1).view(-1, *train.info.shape)
    bar = DigitBar(test.x, clf, 1.0)
    return attrs.evolve(bar, mixture_mmd=bar.scores(x)[0])


@pytest.mark.parametrize("mutate", [None, generator_ignores_z], ids=["gan", "gan-ignores-z"])
def test_gan_beats_a_gaussian_mixture_on_digits_and_a_generator_ignoring_z_does_not(mutate, digit_bar):
    """DCGAN with its defaults. Measured (600 steps, seed 0): MMD^2 0.007 against the mixture's 0.026,
    87% read with p > 0.5, every class at least 27 times. The classifier's confidence does not beat the
    mixture's (87% vs 88%; mean top probability 0.75 vs 0.78), so the bar is the MMD with the reading
    as a floor. A generator that ignores z draws one digit and must fail."""
    model = _train("gan", "digits", mutate, steps=600)
    assert digit_bar.met_by(_samples(model, 500)) == (mutate is None), digit_bar.scores(_samples(model, 500))


def stylegan_on_digits(mutate: Callable | None = None):
    """StyleGAN trained 300 steps on digits (width 16; its other settings the defaults for 8x8 images)."""
    return _train("stylegan", "digits", mutate, steps=300, overrides=["width=16"])


def test_stylegan_beats_a_gaussian_mixture_on_digits_and_truncation_reduces_variance(digit_bar):
    """The DCGAN's bar: below 0.8 x the fitted mixture's MMD^2 (0.026), 60% read with p > 0.5, every class
    at 2% of the samples or more. Measured (300 steps, width 16; seeds 0/1/2): MMD^2 0.018/0.018/0.018,
    78-80% read with p > 0.5, every class at least 22 times. Before the discriminator judged clamped fakes
    and the small-image settings (StyleGAN's docstring): 0.13-0.18, which only its untrained self could bar."""
    model = stylegan_on_digits()
    assert digit_bar.met_by(_samples(model, 500)), digit_bar.scores(_samples(model, 500))
    spread = {}
    for psi in (1.0, 0.7, 0.3):
        model.config = attrs.evolve(model.config, truncation=psi)  # what `--set truncation=psi` does
        spread[psi] = float(_samples(model, 500).var(0).sum())
    assert spread[0.3] < spread[0.7] < spread[1.0]
    assert spread[0.3] < 0.7 * spread[1.0]


def test_a_stylegan_whose_discriminator_never_sees_the_data_fails_the_same_bar(digit_bar):
    """Measured (seed 0): MMD^2 0.57, 42% of the samples read as 4: the generator learns the stand-in N(0, I)."""
    model = stylegan_on_digits(blind_critic)
    assert not digit_bar.met_by(_samples(model, 500)), digit_bar.scores(_samples(model, 500))
