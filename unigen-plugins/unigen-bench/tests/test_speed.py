"""The speed report's machinery, checked without timing anything.

- The bare loop of ``trainer_overhead`` does the same math as the generic trainer: the same weights
  after the same steps, so the ratio compares equal work.
- Medians, pairing, fits and the zero-network patch behave as documented.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from unigen import DataInfo, Dataset, GenerativeModel, Trainer
from unigen.cli import main
from unigen.plugins import default_host
from unigen_bench.speed import _meta, overhead, samplers, timing
from unigen_bench.speed.report import format_report


# -- trainer and bare loop --------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class TinyCfg:
    hidden: int = 8


class Tiny(GenerativeModel):
    """A denoising autoencoder on vectors; the noise makes the test check that both loops draw the
    same random numbers in the same order."""

    family = "test"
    Config = TinyCfg

    def __init__(self, config, data):
        super().__init__(config, data)
        self.net = nn.Sequential(nn.Linear(data.dim, config.hidden), nn.Tanh(), nn.Linear(config.hidden, data.dim))

    def loss(self, batch, group=None):
        noisy = batch.x + 0.1 * torch.randn_like(batch.x)
        return (self.net(noisy) - batch.x).pow(2).mean()


def _data(n=100, dim=5):
    g = torch.Generator().manual_seed(1)
    info = DataInfo(name="toy", shape=(dim,), kind="vector")
    return Dataset(info=info, x=torch.randn(n, dim, generator=g), y=torch.arange(n) % 3)


def test_bare_loop_does_the_same_math_as_the_trainer():
    data = _data()
    torch.manual_seed(0)
    a = Tiny(TinyCfg(), data.info)
    b = Tiny(TinyCfg(), data.info)
    b.load_state_dict(a.state_dict())
    config = overhead.overhead_config(a, batch_size=16, steps=15, device="cpu")  # 6 per epoch: crosses two epochs
    torch.manual_seed(5)
    Trainer(a, data, config, quiet=True).fit()
    torch.manual_seed(5)
    overhead.BareLoop(b, data, config).run(15)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def test_trainer_vs_bare_reports_wall_and_cpu_ratios_per_pair():
    data = _data()
    torch.manual_seed(0)
    res = overhead.trainer_vs_bare(Tiny(TinyCfg(), data.info), data, batch_size=16, steps=3, repeats=3,
                                host=default_host())
    assert res["ratio"]["n"] == 3 and res["cpu_ratio"]["n"] == 3  # the warm-up pair is not counted
    assert res["ratio"]["median"] > 0 and res["cpu_ratio"]["median"] > 0
    assert res["ok"] == (res["ratio"]["median"] <= timing.OVERHEAD_TARGET)


# -- the report's helpers ------------------------------------------------------------------------------------
def test_stats_pairing_and_fit():
    s = timing.stats([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["n"] == 4
    order = []
    ta, tb, ratios = timing.paired(lambda: order.append("a") or 2.0, lambda: order.append("b") or 1.0, 4, warmup=1)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # alternating after the warm-up
    assert ratios == [2.0] * 4
    fit = timing.linear_fit([1, 2, 3, 4], [5, 7, 9, 11])
    assert fit == {"slope": 2.0, "intercept": 3.0, "r2": 1.0}


def test_zero_networks_return_zeros_of_the_real_shape_and_record_calls():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 2)
            self.scale = 2.0

        def forward(self, x):
            return self.net(x) * self.scale

    model = Model()
    stamps = []
    patched = timing.patch_zero_networks(model, stamps)
    assert len(patched) == 1
    for _ in range(3):
        out = model(torch.randn(4, 3))
    assert out.shape == (4, 2) and not out.any()
    assert len(stamps) == 3
    cost = timing.step_cost(stamps, steps=3)
    assert cost["calls"] == 3 and cost["per_step"] >= 0


def test_core_sampler_section_and_text_report(tmp_path):
    ctx = timing.Context(host=default_host())
    res = samplers.core_sampler_steps(ctx, (4, 1, 2, 2), steps=5, repeats=2)
    assert res["euler"]["calls"] == 5 and res["heun"]["calls"] == 10 and res["rk4"]["calls"] == 20
    assert res["euler"]["step_ms"]["n"] == 2
    noise = samplers.noise_draw(ctx, (4, 1, 2, 2), repeats=3)
    assert noise["step_ms"]["n"] == 3 and noise["step_ms"]["median"] > 0
    report = {"meta": _meta(ctx), "samplers": {"shape": [4, 1, 2, 2], "core": res, "models": {},
                                                    "diffusers": {"error": "diffusers not installed"},
                                                    "noise_draw": noise}}
    text = format_report(report)
    assert "euler" in text and "diffusers not installed" in text and "N(0, I) alone" in text


def test_vector_view_flattens_the_examples():
    data = Dataset(info=DataInfo(name="img", shape=(1, 2, 2), levels=17), x=torch.randn(5, 1, 2, 2))
    v = timing.vector_view(data)
    assert v.info.shape == (4,) and v.info.kind == "vector" and v.info.levels == 17
    assert torch.equal(v.x, data.x.reshape(5, 4))


def test_cli_rejects_an_unknown_section(capsys, monkeypatch):
    monkeypatch.setenv("UNIGEN_MALLOC", "system")  # leave this process's malloc alone
    assert main(["speed", "--sections", "nope"]) == 2
    assert "unknown section 'nope'" in capsys.readouterr().err


def test_the_command_prints_the_text_report(capsys, monkeypatch):
    """`unigen speed` without --json formats the report (the report is a fixed one, put in place
    of speed.run by monkeypatch: the measurements themselves are checked above)."""
    import unigen_bench.speed as speed

    monkeypatch.setenv("UNIGEN_MALLOC", "system")
    ctx = timing.Context(host=default_host())
    core = samplers.core_sampler_steps(ctx, (4, 1, 2, 2), steps=3, repeats=2)
    monkeypatch.setattr(speed, "run", lambda ctx, sections: {
        "meta": {**_meta(ctx), "seconds": 0.1},
        "samplers": {"shape": [4, 1, 2, 2], "core": core, "models": {}, "diffusers": {"error": "not installed"}}})
    assert main(["speed", "--sections", "samplers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("unigen speed") and "euler" in out
