"""`unigen bench`: the files it writes, failure isolation, the time budget, the quick settings."""

from __future__ import annotations

import json
import sys
import time

import attrs
import pytest
import torch

import unigen
from unigen import hookimpl
from unigen.cli import main
from unigen.plugins import get_plugin_manager
from unigen_bench import bench

HEADER = ("| Model | Family | NLL bits/dim (exact/bound/estimate) | FID | IS | Precision | Recall | Samples/sec | "
          "Sampling steps |")


class _Feats(torch.nn.Module):
    """A stand-in evaluator (features, logits), so these tests need no trained evaluator CNN."""

    def forward(self, x):
        f = x.flatten(1)
        return f, f[:, :10] * 4


@pytest.fixture
def evaluator_file(tmp_path):
    batch = torch.export.Dim("batch")
    program = torch.export.export(_Feats(), (torch.zeros(4, 1, 8, 8),), dynamic_shapes={"x": {0: batch}})
    path = tmp_path / "feats.pt2"
    torch.export.save(program, str(path))
    return str(path)


class Broken(unigen.GenerativeModel):
    family = "test"
    data_kinds = ("image",)

    def __init__(self, config, data):
        super().__init__(config, data)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def loss(self, batch, group=None):
        raise RuntimeError("boom in the loss")


class BrokenPlugin:
    @hookimpl
    def unigen_register_models(self, register):
        register(unigen.ModelSpec(id="broken", model_cls=Broken))


def test_a_failing_model_is_recorded_and_the_others_still_run(tmp_path, evaluator_file):
    pytest.importorskip("unigen_vae")  # the bench runs real models; the vae family is the one it uses
    host = get_plugin_manager(plugins=[BrokenPlugin()])
    c = bench.BenchConfig(out=tmp_path / "b", models=("broken", "vae"), steps=2, n=60, evaluator=evaluator_file)
    messages = []
    results = bench.run(c, host=host, log=messages.append)
    by_id = {e["model"]: e for e in results["models"]}
    assert by_id["broken"]["status"] == "failed" and "boom in the loss" in by_id["broken"]["error"]
    assert by_id["vae"]["status"] == "ok" and by_id["vae"]["train"]["steps"] == 2
    md = (tmp_path / "b" / "results.md").read_text()
    assert HEADER in md and "| broken | test | failed: RuntimeError: boom in the loss" in md
    assert any("FAILED" in m and "broken" in messages[i - 1] for i, m in enumerate(messages))
    assert (tmp_path / "b" / "samples-vae.png").exists() and (tmp_path / "b" / "latent-vae.png").exists()


class _StepCountingClock(unigen.Callback):
    """A clock for the bench's budget logic that advances ``dt`` seconds per training step and not
    otherwise, so the budget tests count steps instead of timing a loaded machine (how fast the steps
    really are is the benchmarks' business)."""

    def __init__(self, dt: float) -> None:
        self.dt, self.now = dt, 0.0

    def perf_counter(self) -> float:
        return self.now

    def on_step_end(self, trainer, step):
        self.now += self.dt


def _clocked(monkeypatch, dt: float) -> _StepCountingClock:
    """Run bench.train on a _StepCountingClock: its clock reads, and every Trainer it builds ticks it."""
    clock = _StepCountingClock(dt)

    class Clocked(unigen.Trainer):
        def __init__(self, *args, callbacks=(), **kwargs):
            super().__init__(*args, callbacks=[*callbacks, clock], **kwargs)

    monkeypatch.setattr(bench.training, "time", clock)
    monkeypatch.setattr(bench.training, "Trainer", Clocked)
    return clock


def test_a_time_budget_is_met_with_the_generic_trainer(tmp_path, monkeypatch):
    pytest.importorskip("unigen_vae")  # the bench runs real models; the vae family is the one it uses
    host = unigen.default_host()
    c = bench.BenchConfig(out=tmp_path, minutes=0.04)  # 2.4 s
    data = unigen.load_dataset("digits")
    model = unigen.build_model("vae", data.info)
    tc = bench.trainer_config(model, c)
    clock = _clocked(monkeypatch, dt=0.12)  # 20 steps fill the budget
    out = bench.train(model, data, tc, tmp_path / "run", c, host, strict=False)
    # the run and its resumed extensions stop inside the budget, having used at least 90% of it
    assert 18 <= out["steps"] <= 20 and clock.now == pytest.approx(out["steps"] * 0.12)
    assert out["seconds"] == pytest.approx(clock.now) and out["steps_per_sec"] == pytest.approx(1 / 0.12)
    assert unigen.checkpoint.latest_checkpoint(tmp_path / "run").name == f"step_{out['steps']:08d}"
    # a budget too small for the default config is refused (the bench then takes the example config):
    # at 10 s a step, 6 < MIN_STEPS steps fit in 60 s (the probe's real-time limit, 30 s, stays far away)
    _clocked(monkeypatch, dt=10.0)
    with pytest.raises(bench.TooSlow, match="only 6 training steps fit in the 60 s budget"):
        bench.train(model, data, tc, tmp_path / "run2", attrs.evolve(c, minutes=1.0), host)


def test_metric_time_limit_stops_a_slow_metric():
    with pytest.raises(bench.MetricTimeout, match="ran past"):
        with bench.time_limit(0.2, "a slow metric"):
            deadline = time.perf_counter() + 5
            while time.perf_counter() < deadline:  # busy work the time limit must interrupt
                time.sleep(0.01)


def test_quick_settings_and_sampling_steps_labels(tmp_path):
    q = bench.BenchConfig.quick(tmp_path)
    assert q.data == "digits" and q.minutes and q.steps is None and q.n <= 500
    assert bench.BenchConfig.quick(tmp_path, steps=10).minutes is None  # --steps replaces the time budget

    class Many(unigen.GenerativeModel):
        default_steps = 1000

    class One(unigen.GenerativeModel):
        default_steps = None

    assert bench.sampling_steps(Many, q) == (50, "50 (capped; default 1000)")
    assert bench.sampling_steps(One, q) == (None, "default")
    full = bench.BenchConfig(out=tmp_path)
    assert bench.sampling_steps(Many, full) == (None, "1000")
    assert bench.sampling_steps(Many, bench.BenchConfig(out=tmp_path, sample_steps=7)) == (7, "7")


def test_default_models_are_those_that_accept_the_data():
    pytest.importorskip("unigen_vae")  # the bench runs real models; the vae family is the one it uses
    host = unigen.default_host()
    image_ids = [s.id for s in bench.select_models(host, "digits", None)]
    assert "vae" in image_ids
    assert all("image" in host.models[i].model_cls.data_kinds for i in image_ids)
    vector_ids = [s.id for s in bench.select_models(host, "moons", None)]
    assert all("vector" in host.models[i].model_cls.data_kinds for i in vector_ids)


@pytest.mark.parametrize("argv", [
    ["bench", "--models", "nosuchmodel", "--steps", "1"],
    ["bench", "--steps", "0"],
    ["bench", "--steps", "5", "--minutes", "1"],
    ["bench", "--data", "nodata"],
    ["bench", "--max-sample-steps", "0"],
])
def test_bench_mistakes_are_one_line_and_exit_2(capsys, tmp_path, argv):
    try:
        code = main([*argv, "--out", str(tmp_path / "b")])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len([line for line in err.splitlines() if line.strip()]) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_bench_cli_writes_results_and_pictures(capsys, tmp_path):
    pytest.importorskip("unigen_vae")  # the bench runs real models; the vae family is the one it uses
    out = tmp_path / "bench"
    code = main(["bench", "--models", "vae,beta-vae", "--data", "digits", "--steps", "60", "--n", "200",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "[1/2] vae" in captured.err and "[2/2] beta-vae" in captured.err
    results = json.loads((out / "results.json").read_text())
    assert [e["model"] for e in results["models"]] == ["vae", "beta-vae"]
    for e in results["models"]:
        assert e["status"] == "ok" and e["train"]["steps"] == 60
        for key in ("nll_bits_per_dim", "fid", "kid", "is", "precision", "recall"):
            assert isinstance(e["metrics"][key], float), key
        assert e["samples_per_sec"] > 0 and e["train_steps_per_sec"] > 0
        assert (out / f"samples-{e['model']}.png").exists() and (out / f"latent-{e['model']}.png").exists()
    losses = [r["loss"] for r in results["loss_comparison"]]
    assert len(losses) == 2 and losses == sorted(losses)
    assert results["evaluator"]["test_accuracy"] >= 0.95
    md = (out / "results.md").read_text()
    assert HEADER in md and "| vae | vae |" in md and "(bound)" in md and "loss-comparison.png" in md
    assert (out / "loss-comparison.png").exists()
    # the run directories are ordinary runs
    assert main(["eval", str(out / "runs" / "vae"), "--metrics", "nll", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nll_kind"] == "bound"


@pytest.mark.parametrize("item, named", [("vae.nokey=1", "nokey"), ("nosuch.z_dim=1", "nosuch"),
                                         ("vae.z_dim=abc", "z_dim"), ("fsq.width=8", "fsq")])
def test_a_bad_model_setting_is_one_line_before_any_training(tmp_path, capsys, item, named):
    pytest.importorskip("unigen_vae")  # the bench runs real models; the vae family is the one it uses
    from unigen.cli import main

    code = main(["bench", "--models", "vae", "--steps", "1", "--out", str(tmp_path / "b"), "--set", item])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and named in lines[0], err
    assert not (tmp_path / "b").exists()


def test_bench_takes_trainer_defaults_from_the_built_model(tmp_path):
    """A model's preferred settings may depend on its data (wgan-gp: the paper's 2-D toy optimizer on
    vectors, Algorithm 1's on images): the bench reads them from the instance, under its own budget."""
    pytest.importorskip("unigen_gan")
    c = bench.BenchConfig(out=tmp_path, steps=5, batch_size=16)
    toy = bench.trainer_config(unigen.build_model("wgan-gp", unigen.load_dataset("moons").info), c)
    images = bench.trainer_config(unigen.build_model("wgan-gp", unigen.load_dataset("digits").info), c)
    assert (toy.lr, toy.betas, toy.lr_schedule, toy.steps, toy.batch_size) == (5e-4, (0.5, 0.9), "linear", 5, 16)
    assert (images.lr, images.betas) == (1e-4, (0.0, 0.9))


class _NoMatplotlib:
    """A meta path finder that makes ``import matplotlib`` fail, as in an install without the plots extra."""

    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r} (hidden by the test)")
        return None


def test_bench_without_matplotlib_writes_its_tables_and_says_which_pictures_it_skipped(capsys, tmp_path,
                                                                                       monkeypatch):
    pytest.importorskip("unigen_vae")  # the bench runs real models; the vae family is the one it uses
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoMatplotlib(), *sys.meta_path])
    out = tmp_path / "bench"
    code = main(["bench", "--models", "vae", "--data", "digits", "--steps", "20", "--n", "100", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    skipped = [line for line in err.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "loss-comparison.png" in skipped[0] and "latent" in skipped[0], skipped
    results = json.loads((out / "results.json").read_text())
    assert results["models"][0]["status"] == "ok" and results["loss_chart"] is None
    md = (out / "results.md").read_text()
    assert HEADER in md and "| vae | vae |" in md and "loss-comparison.png" not in md and "latent-vae" not in md
    assert (out / "samples-vae.png").exists()  # sample grids are drawn with PIL
    assert not (out / "loss-comparison.png").exists() and not (out / "latent-vae.png").exists()
