"""Fast paths of the core, checked without timing anything.

- The in-place solver steps (Euler, Heun, RK4, Euler-Maruyama) equal the straightforward formulas,
  also for a field that returns the same output buffer every call, and allocate nothing per step.
- The trainer's loss bookkeeping (stacked once per interval) and its constant-LR fast path keep the
  logged losses and the saved scheduler state what they were.
- glibc malloc tuning respects the user's settings.
"""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from unigen import DataInfo, Dataset, GenerativeModel, Trainer, TrainerConfig
from unigen.plugin import get_sampler


# -- reference solvers: the textbook formulas, allocating freely -------------------------------------------
def _grid(steps):
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()


def _t(x, t):
    return torch.full((x.shape[0],), t, dtype=x.dtype)


def ref_euler(fn, x, steps):
    for a, b in zip(_grid(steps)[:-1], _grid(steps)[1:]):
        x = x + (b - a) * fn(x, _t(x, a))
    return x


def ref_heun(fn, x, steps):
    for a, b in zip(_grid(steps)[:-1], _grid(steps)[1:]):
        h = b - a
        d1 = fn(x, _t(x, a))
        d2 = fn(x + h * d1, _t(x, b))
        x = x + h / 2 * (d1 + d2)
    return x


def ref_rk4(fn, x, steps):
    for a, b in zip(_grid(steps)[:-1], _grid(steps)[1:]):
        h = b - a
        k1 = fn(x, _t(x, a))
        k2 = fn(x + h / 2 * k1, _t(x, a + h / 2))
        k3 = fn(x + h / 2 * k2, _t(x, a + h / 2))
        k4 = fn(x + h * k3, _t(x, b))
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def ref_euler_maruyama(fn, x, steps, generator):
    ts = _grid(steps)
    for i, (a, b) in enumerate(zip(ts[:-1], ts[1:])):
        dt = b - a
        drift, g = fn(x, _t(x, a))
        x = x + drift * dt
        if i < steps - 1:
            x = x + g * torch.randn(x.shape, generator=generator, dtype=x.dtype) * math.sqrt(abs(dt))
    return x


REFERENCES = {"euler": ref_euler, "heun": ref_heun, "rk4": ref_rk4}

W = torch.tensor([[-0.7, 0.4, 0.1], [0.2, -0.3, 0.5], [-0.4, 0.1, -0.2]], dtype=torch.float64)


def field(x, t):
    """A nonlinear, time-dependent field: dx/dt = tanh(x W) (1 + t) + sin(t)."""
    return torch.tanh(x @ W) * (1 + t)[:, None] + torch.sin(t)[:, None]


class SameBuffer:
    """The same field, written into one output buffer returned by every call."""

    def __init__(self):
        self.out = None

    def __call__(self, x, t):
        value = field(x, t)
        if self.out is None:
            self.out = torch.empty_like(value)
        return self.out.copy_(value)


X = torch.tensor([[1.0, -0.5, 0.3], [0.2, 2.0, -1.1], [-0.7, 0.0, 0.9]], dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("fn_kind", ["fresh", "same-buffer"])
def test_in_place_ode_steps_equal_the_formula(name, fn_kind):
    fn = field if fn_kind == "fresh" else SameBuffer()
    got = get_sampler(name).solve(fn, X.clone(), 7)
    want = REFERENCES[name](field, X.clone(), 7)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_in_place_euler_maruyama_equals_the_formula_with_the_same_noise():
    def sde(x, t):
        return -x * (1 + t)[:, None], (0.5 + t)[:, None].expand_as(x).contiguous()

    def sde_scalar(x, t):
        return -x, 0.3

    for fn in (sde, sde_scalar):
        got = get_sampler("euler-maruyama").solve(fn, X.clone(), 6, generator=torch.Generator().manual_seed(3))
        want = ref_euler_maruyama(fn, X.clone(), 6, torch.Generator().manual_seed(3))
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_solver_input_is_not_modified():
    x = X.clone()
    for name in REFERENCES:
        get_sampler(name).solve(field, x, 3)
    assert torch.equal(x, X)


class _CountAllocations(TorchDispatchMode):
    """Counts operators that return a new tensor (neither in place nor out=)."""

    def __init__(self):
        super().__init__()
        self.allocating = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func._schema.is_mutable:
            self.allocating += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["euler", "heun", "rk4", "euler-maruyama"])
def test_solver_steps_allocate_nothing_beyond_the_network_output(name):
    spec = get_sampler(name)
    out = torch.zeros(4, 3)

    def fn(x, t):  # a zero-cost network with a preallocated output
        return out if spec.kind == "ode" else (out, out)

    counts = []
    for steps in (3, 9):
        with _CountAllocations() as mode:
            spec.solve(fn, torch.ones(4, 3), steps, generator=torch.Generator().manual_seed(0))
        counts.append(mode.allocating)
    assert counts[0] == counts[1], f"{name}: {counts[1] - counts[0]} allocations in 6 extra steps"


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


def test_logged_loss_is_the_mean_of_the_interval_and_constant_lr_state_is_saved():
    data = _data()
    torch.manual_seed(0)
    model = Tiny(TinyCfg(), data.info)
    seen = []

    class Spy(Tiny):
        def loss(self, batch, group=None):
            value = super().loss(batch, group)
            seen.append(float(value.detach()))
            return value

    spy = Spy(TinyCfg(), data.info)
    spy.load_state_dict(model.state_dict())
    trainer = Trainer(spy, data, TrainerConfig(steps=8, batch_size=16, log_every=4), quiet=True)
    record = trainer.fit()
    assert record["loss/main"] == pytest.approx(sum(seen[4:]) / 4, rel=1e-6)
    state = trainer.state()["schedulers"]["main"]
    assert state["last_epoch"] == 8
    assert trainer.optimizers["main"].param_groups[0]["lr"] == trainer.config.lr


def test_cosine_schedule_still_steps_the_learning_rate():
    data = _data()
    model = Tiny(TinyCfg(), data.info)
    trainer = Trainer(model, data, TrainerConfig(steps=6, batch_size=16, lr_schedule="cosine"), quiet=True)
    trainer.fit()
    lr = trainer.optimizers["main"].param_groups[0]["lr"]
    assert lr == pytest.approx(trainer.config.lr * 0.5 * (1 + math.cos(math.pi)), abs=1e-12)
    assert trainer.state()["schedulers"]["main"]["last_epoch"] == 6


def test_a_loss_hook_plugin_is_still_called_by_the_trainer():
    from unigen import get_plugin_manager, hookimpl

    calls = []

    class Wrap:
        @hookimpl(wrapper=True)
        def unigen_loss(self, model, batch, group):
            calls.append(group)
            return (yield)

    host = get_plugin_manager(autoload=False, plugins=[Wrap()])
    data = _data()
    Trainer(Tiny(TinyCfg(), data.info), data, TrainerConfig(steps=3, batch_size=16), quiet=True, host=host).fit()
    assert calls == ["main"] * 3


def test_malloc_tune_respects_the_user_and_reports_its_state(monkeypatch):
    from unigen import malloc

    monkeypatch.setenv("UNIGEN_MALLOC", "system")
    assert malloc.tune() is False
    monkeypatch.delenv("UNIGEN_MALLOC")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert malloc.tune() is False
    assert malloc.describe() in ("env", "mallopt")

