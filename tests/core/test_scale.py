"""Training at scale on CPU: gradient accumulation (K micro-batches equal one K-times larger batch),
exact resume with accumulation, bf16/fp16 autocast with fp32 checkpoints."""

from __future__ import annotations

import os

import pytest
import torch

import unigen
from unigen.trainer import Trainer


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _train(model_id: str, data_id: str, model_cfg: dict, steps: int, **trainer) -> dict[str, torch.Tensor]:
    data = unigen.load_dataset(data_id)
    torch.manual_seed(0)
    model = unigen.build_model(model_id, data.info, model_cfg)
    Trainer(model, data, {"steps": steps, "log_every": steps, "checkpoint_minutes": 0.0, "lr": 1e-3, **trainer},
            quiet=True).fit()
    return _params(model)


# A VAE (reparameterisation noise: one draw of (B, z) per loss, so 4 draws of 32 are one draw of 128)
# and a GAN with two parameter groups and n_critic = 5 (MLPs on vectors: no batch norm, whose batch
# statistics would differ between 32 and 128 examples by design).
@pytest.mark.parametrize(("model_id", "data_id", "cfg"), [
    ("vae", "digits", {"z_dim": 4, "width": 8}),
    ("wgan", "moons", {}),
])
def test_accumulation_equals_the_larger_batch(model_id, data_id, cfg):
    big = _train(model_id, data_id, cfg, 6, batch_size=128)
    acc = _train(model_id, data_id, cfg, 6, batch_size=32, grad_accum=4)
    one = _train(model_id, data_id, cfg, 6, batch_size=32)
    moved = max((big[k] - one[k]).abs().max().item() for k in big)
    assert moved > 1e-4  # the comparison can fail: batch 32 alone trains elsewhere
    for k in big:
        torch.testing.assert_close(acc[k], big[k], atol=2e-5, rtol=1e-4, msg=k)


def test_resume_with_accumulation_is_bit_identical(tmp_path):
    data = unigen.load_dataset("moons")
    # A constant lr: WGAN's vector default decays linearly over the run's length, which the resumed run
    # (--steps 6 after a 3-step run) changes by design; the schedule is not what this test is about.
    settings = {"batch_size": 16, "grad_accum": 3, "checkpoint_minutes": 0.0, "log_every": 2,
                "lr_schedule": "constant"}

    def run(out, steps, resume=False):
        torch.manual_seed(0)
        model = unigen.build_model("wgan", data.info, {})
        t = Trainer(model, data, {**settings, "steps": steps}, run_dir=out, quiet=True)
        if resume:
            assert t.resume()
        t.fit()
        return _params(model), t.batches.state_dict()

    whole, state = run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)
    resumed, state_b = run(tmp_path / "b", 6, resume=True)
    assert state == state_b
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k


# One image model of each family: bf16 autocast trains it to a loss close to fp32's after the same
# 20 steps (the mean loss over the steps; the tolerance is |bf16 - fp32| <= 0.05 |fp32| + 0.05).
FAMILY_MODELS = ["vae", "gan", "ddpm", "flow-matching", "pixelcnn", "stochastic-interpolant", "jepa"]


def _losses(model_id: str, data, config, **trainer) -> dict[str, float]:
    torch.manual_seed(0)
    model = unigen.build_model(model_id, data.info, config)
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in model.trainer_defaults.items()
                if k in ("lr", "betas", "optimizer")}
    last = Trainer(model, data, {**settings, "steps": 20, "batch_size": 16, "log_every": 20,
                                 "checkpoint_minutes": 0.0, **trainer}, quiet=True).fit()
    return {k: v for k, v in last.items() if k.startswith("loss/")}


@pytest.mark.parametrize("model_id", FAMILY_MODELS)
def test_bf16_autocast_trains_each_family_close_to_fp32(model_id, tmp_path):
    from unigen.testing import example_config

    data = unigen.load_dataset("digits")
    config = example_config(unigen.default_host().models[model_id].model_cls, data.info, tmp_path)
    fp32 = _losses(model_id, data, config)
    bf16 = _losses(model_id, data, config, precision="bf16")
    assert fp32.keys() == bf16.keys()
    assert fp32 != bf16  # autocast took effect
    for k, ref in fp32.items():
        assert abs(bf16[k] - ref) <= 0.05 * abs(ref) + 0.05, (k, ref, bf16[k])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_checkpoints_stay_fp32(precision, tmp_path):
    from unigen import checkpoint as ck

    data = unigen.load_dataset("moons")
    torch.manual_seed(0)
    model = unigen.build_model("wgan", data.info, {})
    t = Trainer(model, data, {"steps": 4, "batch_size": 32, "precision": precision, "checkpoint_minutes": 0.0},
                run_dir=tmp_path, quiet=True)
    t.fit()
    weights = ck.load_weights(ck.latest_checkpoint(tmp_path) / "model.safetensors")
    assert weights and all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())
    if precision == "fp16":  # the loss scalers are part of the exact state
        state = ck.load_state(ck.latest_checkpoint(tmp_path) / "state.pt")
        assert set(state["scalers"]) == set(model.parameter_groups())


def _compiled_run(model_id: str, compile: bool) -> tuple[dict[str, torch.Tensor], list]:
    import warnings

    data = unigen.load_dataset("moons")
    torch.manual_seed(0)
    model = unigen.build_model(model_id, data.info, {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(model, data, {"steps": 3, "batch_size": 32, "compile": compile, "checkpoint_minutes": 0.0},
                quiet=True).fit()
    warned = [w for w in caught if "--compile" in str(w.message)]
    nets = [m for m in model.children() if any(True for _ in m.parameters())]
    assert all(("forward" in m.__dict__) == (compile and not warned) for m in nets)  # compiled, or undone
    return _params(model), warned


def test_compile_falls_back_with_one_warning_where_the_model_cannot(monkeypatch):
    """WGAN-GP's gradient penalty is a double backward, which a compiled graph (AOT autograd) does not
    support: one warning, then the run trains eagerly and exactly as without --compile."""
    monkeypatch.setattr("unigen.trainer.COMPILE_BACKEND", "aot_eager")  # the same graphs, no code generation
    compiled, warned = _compiled_run("wgan-gp", True)
    eager, none = _compiled_run("wgan-gp", False)
    assert len(warned) == 1 and not none
    assert "wgan-gp cannot be compiled" in str(warned[0].message)
    for k in eager:
        assert torch.equal(compiled[k], eager[k]), k


@pytest.mark.parametrize("backend", [
    "aot_eager",  # dynamo + AOT autograd, the graphs inductor would get
    # inductor generates and builds C++ kernels: ~80 s on a loaded CPU, beyond the CI budget; run it with
    # UNIGEN_TEST_INDUCTOR=1 (and on a GPU by benchmarks/gpu_check.sh)
    pytest.param("inductor", marks=pytest.mark.skipif(not os.environ.get("UNIGEN_TEST_INDUCTOR"),
                                                      reason="UNIGEN_TEST_INDUCTOR=1 runs it")),
])
def test_compile_trains_a_model_that_compiles(backend, monkeypatch):
    monkeypatch.setattr("unigen.trainer.COMPILE_BACKEND", backend)
    compiled, warned = _compiled_run("wgan", True)
    eager, _ = _compiled_run("wgan", False)
    assert not warned
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.slow
def test_two_ranks_with_overlapped_bucketed_reduction_equal_one_rank(tmp_path):
    """Two gloo ranks of batch 16 (gradients reduced bucket by bucket during the backward pass, the
    group being stepped only, once per accumulated step) equal one process of batch 32."""
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).with_name("ddp_two_groups.py"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, script, str(tmp_path / "one.pt"), "32"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          script, str(tmp_path / "two.pt"), "16"], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)


@pytest.mark.parametrize("device", ["cuda:7", "mps", "tpu"])
def test_a_device_this_machine_lacks_is_one_config_error(device):
    from unigen.errors import ConfigError

    if device == "cuda:7" and torch.cuda.device_count() > 7 or device == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"{device} is available here")
    data = unigen.load_dataset("moons")
    model = unigen.build_model("wgan", data.info, {})
    with pytest.raises(ConfigError, match="device") as err:
        Trainer(model, data, {"device": device, "steps": 1}, quiet=True)
    assert "\n" not in str(err.value)


def test_channels_last_trains_a_conv_model_as_the_default_layout():
    def run(channels_last: bool):
        data = unigen.load_dataset("digits")
        torch.manual_seed(0)
        model = unigen.build_model("vae", data.info, {"z_dim": 4, "width": 8})
        Trainer(model, data, {"steps": 3, "batch_size": 32, "channels_last": channels_last,
                              "checkpoint_minutes": 0.0}, quiet=True).fit()
        convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1]
        assert convs and all(w.is_contiguous(memory_format=torch.channels_last) == channels_last for w in convs)
        return _params(model)

    a, b = run(False), run(True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
