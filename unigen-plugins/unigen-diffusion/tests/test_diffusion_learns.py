"""It learns: short real training runs of each diffusion model beat their untrained (or weaker) selves.

Sample quality on digits is measured by the MMD to held-out test digits (RBF scales suited to 64-d
images in [-1, 1]; a linear classifier's confidence was tried and rejected: it is more confident on
saturated noise than on digits); on moons by the MMD to fresh points of the density. The ddpm teacher is trained once and shared by the consistency test.
"""

from __future__ import annotations

import pytest
import torch

import unigen
from unigen.data.toy import sample_toy
from unigen.metrics.mmd import mmd2
from unigen.testing import quick_train, untrained

torch.set_num_threads(1)
SCALES = (2.0, 4.0, 8.0)
# The learn tests use the MLP denoiser: the UNet path is the same code (contract-tested), ~10x slower on a CPU.
DDPM_CFG = {"net": "mlp", "hidden": 256, "depth": 3}


@pytest.fixture(scope="module")
def digits_test():
    return unigen.load_dataset("digits", "test").x[:300]


def _mmd(x, ref):
    return float(mmd2(x, ref, scales=SCALES))


def _train_run(model_id, run, data, steps, cfg, trainer):
    """quick_train into a run directory that unigen.load_run can read (for teachers/autoencoders)."""
    model_cfg = unigen.model_config(model_id, cfg)
    return quick_train(model_id, data, steps=steps, batch_size=64, config=model_cfg, run_dir=run, trainer=trainer)


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddpm") / "run"
    model = _train_run("ddpm", run, "digits", 1000, DDPM_CFG, {"lr": 2e-3, "ema_decay": 0.0})
    return run, model


@pytest.mark.slow
def test_ddpm_samples_digits_with_1000_ancestral_and_50_ddim_steps(ddpm_run, digits_test):
    _, model = ddpm_run
    assert model.T == 1000
    torch.manual_seed(0)
    base = untrained("ddpm", config=DDPM_CFG).sample(48, 50)
    ancestral, ddim = model.sample(48), model.sample(48, 50)
    noise_mmd = _mmd(base, digits_test)
    for x in (ancestral, ddim):
        assert x.shape == (48, 1, 8, 8)
        assert _mmd(x, digits_test) < noise_mmd / 3, (_mmd(x, digits_test), noise_mmd)


@pytest.mark.slow
def test_ddpm_bound_improves_with_training(ddpm_run, digits_test):
    _, model = ddpm_run
    x = digits_test[:16]
    torch.manual_seed(0)
    before = untrained("ddpm", config=DDPM_CFG).logprob(x).mean()
    after = model.logprob(x).mean()
    assert after > before + 0.5 * x[0].numel(), (before, after)  # at least 0.5 nats per pixel better


@pytest.mark.slow
def test_consistency_one_step_beats_one_step_ddim_from_the_same_teacher(ddpm_run, digits_test):
    run, teacher = ddpm_run
    torch.manual_seed(0)
    student = quick_train("consistency", "digits", steps=300, batch_size=64, config={"teacher": str(run)},
                          trainer={"lr": 5e-4})
    torch.manual_seed(1)
    cd = student.sample(64, 1)
    ddim = teacher.sample(64, 1)
    assert _mmd(cd, digits_test) < 0.5 * _mmd(ddim, digits_test), (_mmd(cd, digits_test), _mmd(ddim, digits_test))


@pytest.mark.slow
@pytest.mark.parametrize("sde,sampler,steps", [("vp", "heun", 100), ("ve", "euler-maruyama", 200)])
def test_score_sde_matches_moons_by_mmd(sde, sampler, steps):
    """VP sampled with the probability-flow ODE, VE with the reverse SDE."""
    cfg = {"sde": sde, "hidden": 128, "sample_steps": steps, "sampler": sampler, "sigma_max": 5.0}
    ref = sample_toy("moons", 400, seed=7)
    torch.manual_seed(0)
    before = float(mmd2(untrained("score-sde", "moons", config=cfg).sample(400), ref))
    model = quick_train("score-sde", "moons", steps=800, batch_size=128, config=cfg, trainer={"lr": 2e-3})
    after = float(mmd2(model.sample(400), ref))
    # two independent draws of 400 moons points: unbiased MMD^2 within about +-0.02 of 0; untrained: about 1
    assert after < 0.1 * before and after < 0.12, (before, after)


@pytest.mark.slow
def test_ldm_trains_and_samples_on_vae_latents(tmp_path, digits_test):
    pytest.importorskip("unigen_vae")
    ae = tmp_path / "vae"
    _train_run("vae", ae, "digits", 300, {"z_dim": 8, "width": 16}, {"lr": 2e-3})
    cfg = {"autoencoder": str(ae), "hidden": 128}
    torch.manual_seed(0)
    before = _mmd(untrained("ldm", config=cfg).sample(64), digits_test)
    model = quick_train("ldm", "digits", steps=400, batch_size=64, config=cfg, trainer={"lr": 2e-3, "ema_decay": 0.0})
    after = _mmd(model.sample(64), digits_test)
    assert after < 0.5 * before, (before, after)
