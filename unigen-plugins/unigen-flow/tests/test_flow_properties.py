"""Mathematical invariants of the flow family: invertibility and log-determinants of RealNVP, exact and
Hutchinson traces, the instantaneous change of variables, the flow-matching path and its target, the
time direction of the ODE flows, and reflow's straightness measure."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import unigen
from unigen import DataInfo
from unigen_flow.flow_matching import interpolate, target_velocity
from unigen_flow.ode import divergence_exact, divergence_hutchinson, standard_normal_logpdf
from unigen_flow.rectified_flow import measure_straightness

torch.set_num_threads(1)  # also when run without the repository's tests/conftest.py


def _randomize(model: nn.Module, seed: int, scale: float = 0.05) -> nn.Module:
    """Random weights everywhere (the zero-initialised last layers and ActNorms included), so the flow
    is far from the identity (0.05 maps [-1, 1] data to |z| up to ~5, as far as float32 inverts to 1e-5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    for name, buf in model.named_buffers():
        if name.endswith("initialized"):
            buf.fill_(1)
    return model.eval()


def _realnvp(shape, seed, scale=0.05, **cfg):
    kind = "image" if len(shape) == 3 else "vector"
    info = DataInfo(name="t", shape=tuple(shape), kind=kind, levels=17 if kind == "image" else None)
    torch.manual_seed(seed)
    config = {"couplings": 2, "scales": 2, "width": 8, "hidden": 16, "vector_couplings": 4, **cfg}
    return _randomize(unigen.build_model("realnvp", info, config), seed, scale)


SHAPES = st.one_of(
    st.tuples(st.integers(1, 6)),
    st.tuples(st.integers(1, 2), st.sampled_from([4, 8]), st.sampled_from([4, 8])),
)


@settings(deadline=None, max_examples=20)
@given(shape=SHAPES, seed=st.integers(0, 10_000), batch=st.integers(1, 4))
def test_realnvp_inverse_is_exact(shape, seed, batch):
    model = _realnvp(shape, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *shape, generator=g) * 2 - 1  # inside the data range (images)
    z = torch.randn(batch, *shape, generator=g)
    with torch.no_grad():
        assert torch.allclose(model.reverse(model.forward(x)), x, atol=1e-4)
        assert torch.allclose(model.forward(model.reverse(z)), z, atol=1e-4)


@settings(deadline=None, max_examples=20)
@given(shape=st.one_of(st.tuples(st.integers(1, 5)), st.just((1, 4, 4)), st.just((2, 2, 2))),
       seed=st.integers(0, 10_000))
def test_realnvp_logdet_equals_autograd_log_abs_det_jacobian(shape, seed):
    model = _realnvp(shape, seed, 0.2, scales=2 if len(shape) == 3 and shape[1] == 4 else 1).double()
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
    _, logdet = model.flow(x)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: model.flow(v[None])[0].flatten(), x[i])
        jac = jac.reshape(x[i].numel(), x[i].numel())
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac)[1], atol=1e-6)


def test_realnvp_logprob_integrates_to_one_in_2d():
    """A density: the Riemann sum of exp(logprob) over a wide grid is 1."""
    model = _realnvp((2,), 3)
    grid = torch.linspace(-12, 12, 601)
    xy = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = model.logprob(xy).exp().sum() * (grid[1] - grid[0]) ** 2
    assert abs(float(mass) - 1) < 0.01


def test_realnvp_image_flow_is_bounded_by_the_logit_box():
    """Images go through logit(alpha + (1 - 2 alpha) p): reverse lands in the box p in
    (-alpha / (1 - 2 alpha), (1 - alpha) / (1 - 2 alpha)) around the dequantized range; samples in [-1, 1]."""
    model = _realnvp((1, 4, 4), 0)
    with torch.no_grad():
        assert torch.isfinite(model.logprob(torch.rand(3, 1, 4, 4) * 2 - 1)).all()
        far = model.reverse(torch.randn(256, 1, 4, 4) * 3)
        samples = model.sample(64)
    lo, span = -1 - 1 / 16, 2 + 2 / 16  # half a bin of 17 levels on [-1, 1]
    edge = 0.05 / 0.9 * span
    assert far.min() > lo - edge and far.max() < lo + span + edge
    assert samples.min() >= -1 and samples.max() <= 1


def test_realnvp_rejects_scales_the_image_cannot_squeeze():
    info = DataInfo(name="t", shape=(1, 6, 6), kind="image", levels=17)
    with pytest.raises(unigen.ConfigError, match="scales"):
        unigen.build_model("realnvp", info, {"scales": 3})


class Tanh2Layer(nn.Module):
    """A small non-linear velocity field with a time input, for trace tests."""

    def __init__(self, d: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(d + 1, 16, generator=g, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(16, d, generator=g, dtype=torch.float64) / 4)

    def forward(self, x, t):
        return torch.tanh(torch.cat([x, t[:, None]], 1) @ self.w1) @ self.w2


@settings(deadline=None, max_examples=20)
@given(d=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_exact_trace_equals_the_autograd_jacobian_trace(d, seed):
    field = Tanh2Layer(d, seed)
    x = torch.randn(3, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    t = torch.full((3,), 0.3, dtype=torch.float64)
    div = divergence_exact(field(x, t), x)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: field(v[None], t[:1])[0], x[i].detach())
        assert torch.allclose(div[i], torch.trace(jac), atol=1e-10)


def test_hutchinson_trace_is_unbiased():
    field = Tanh2Layer(5, 0)
    n = 2000  # probes per example, as one batch
    x = torch.randn(4, 5, dtype=torch.float64).repeat(n, 1).requires_grad_(True)  # (4n, 5)
    out = field(x, torch.zeros(x.shape[0], dtype=torch.float64))
    exact = divergence_exact(out, x)[:4]
    eps = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    est = divergence_hutchinson(out, x, eps).view(n, 4)
    assert torch.allclose(est.mean(0), exact, atol=4 * float(est.std(0).max()) / math.sqrt(n))
    assert float(est.std(0).max()) > 1e-3  # a real estimator, not the exact trace in disguise


class LinearField(nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x, t):
        return x @ self.a.T


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
@pytest.mark.parametrize("model_id", ["cnf", "flow-matching"])
def test_instantaneous_change_of_variables_on_a_linear_flow(model_id, trace):
    """dx/dt = A x carries x to z = e^A x at t=1, so log p_0(x) = log N(e^A x) + tr A exactly."""
    a = torch.tensor([[0.3, -0.8], [0.5, -0.1]], dtype=torch.float64)
    info = DataInfo(name="t", shape=(2,), kind="vector")
    model = unigen.build_model(model_id, info, {"trace": trace, "rtol": 1e-8, "atol": 1e-8}).double()
    model.field = LinearField(a)
    x = torch.randn(5, 2, dtype=torch.float64)
    expected = standard_normal_logpdf(x @ torch.linalg.matrix_exp(a).T) + torch.trace(a)
    with torch.no_grad():
        got = model.logprob(x)
    if trace == "exact":
        assert torch.allclose(got, expected, atol=1e-6)
    else:  # one Rademacher probe, fixed along the solve: eps^T A eps = tr A +- (A_12 + A_21)
        assert torch.allclose((got - expected).abs(), torch.full((5,), 0.3, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("sampler", ["heun", "rk4", "dopri5"])
def test_ode_flows_run_from_noise_at_one_to_data_at_zero(sampler):
    """reverse (t: 1 -> 0) undoes forward (t: 0 -> 1), and forward moves x along +v."""
    info = DataInfo(name="t", shape=(3,), kind="vector")
    torch.manual_seed(0)
    model = _randomize(unigen.build_model("flow-matching", info, {"sampler": sampler, "hidden": 16}), 0, 0.1)
    x = torch.randn(4, 3)
    with torch.no_grad():
        z = model.forward(x)
        assert torch.allclose(model.reverse(z, 200), x, atol=1e-3)
        half = model.forward(x, torch.full((4,), 1e-3))
        v0 = model.velocity(x, torch.zeros(4))
    assert torch.allclose((half - x) / 1e-3, v0, atol=1e-2)


@settings(deadline=None, max_examples=20)
@given(t=st.floats(0, 1), sigma_min=st.floats(0, 0.5), d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_flow_matching_target_is_the_time_derivative_of_the_path(t, sigma_min, d, seed):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(3, d, generator=g, dtype=torch.float64), torch.randn(3, d, generator=g, dtype=torch.float64)
    tt = torch.full((3,), t, dtype=torch.float64)
    _, dxdt = torch.autograd.functional.jvp(lambda s: interpolate(x0, x1, s, sigma_min), tt, torch.ones_like(tt))
    assert torch.allclose(dxdt, target_velocity(x0, x1, sigma_min), atol=1e-12)


@settings(deadline=None, max_examples=20)
@given(sigma_min=st.floats(0, 0.5), seed=st.integers(0, 10_000))
def test_flow_matching_path_ends_at_data_and_noise(sigma_min, seed):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    assert torch.allclose(interpolate(x0, x1, torch.zeros(2), sigma_min), x0 + sigma_min * x1)
    assert torch.allclose(interpolate(x0, x1, torch.ones(2), sigma_min), x1)


@pytest.mark.parametrize("model_id", ["cnf", "flow-matching", "rectified-flow"])
def test_a_unet_on_vector_data_is_refused_in_one_line(model_id):
    """net='unet' on 2-D vectors was an IndexError while building (found by the contract's config search)."""
    info = DataInfo(name="t", shape=(2,), kind="vector")
    with pytest.raises(unigen.ConfigError, match="unet.*needs image data"):
        unigen.build_model(model_id, info, {"net": "unet"})


def test_sampler_field_accepts_registered_ode_solvers_only():
    info = DataInfo(name="t", shape=(2,), kind="vector")
    with pytest.raises(unigen.ConfigError, match="sampler.*SDE"):
        unigen.build_model("flow-matching", info, {"sampler": "euler-maruyama"})
    with pytest.raises(unigen.ConfigError, match="sampler.*known: .*heun"):
        unigen.build_model("cnf", info, {"sampler": "hune"})
    model = unigen.build_model("rectified-flow", info, None, overrides=["sampler=rk4"])
    assert model.config.sampler == "rk4"


class ConstantField(nn.Module):
    def forward(self, x, t):
        return torch.ones_like(x) * 0.7


class RotationField(nn.Module):
    def forward(self, x, t):
        return torch.stack([-x[:, 1], x[:, 0]], 1) * 2


def test_straightness_is_zero_for_straight_paths_only():
    info = DataInfo(name="t", shape=(2,), kind="vector")
    model = unigen.build_model("rectified-flow", info, {"sampler": "rk4"})
    z = torch.randn(64, 2)
    model.field = ConstantField()
    s, dev = measure_straightness(model, z, 20)
    assert s < 1e-10 and dev < 1e-6
    model.field = RotationField()
    s, dev = measure_straightness(model, z, 20)
    assert s > 0.1 and dev > 0.1


def test_reflow_rounds_split_the_trainers_run_by_default():
    """Without reflow_every the model learns the run's length from the trainer (on_train_start)."""
    info = DataInfo(name="t", shape=(2,), kind="vector")
    data = unigen.Dataset(info=info, x=torch.randn(64, 2))
    torch.manual_seed(0)
    model = unigen.build_model("rectified-flow", info, {"num_reflows": 2, "reflow_pairs": 20, "reflow_steps": 2,
                                                         "hidden": 8, "depth": 1})
    rounds = []
    reflow = model.reflow
    model.reflow = lambda: (rounds.append(len(rounds)), reflow())
    unigen.Trainer(model, data, unigen.TrainerConfig(steps=9, batch_size=16), quiet=True).fit()
    assert model.round_steps == 3 and int(model.reflow_round) == 2 and rounds == [0, 1]
    alone = unigen.build_model("rectified-flow", info, {"num_reflows": 1, "hidden": 8})
    with pytest.raises(unigen.UnigenError, match="reflow_every"):
        alone.after_step("main", 0)  # outside the trainer, nobody said how long the run is


def test_reflow_replaces_the_coupling_with_the_models_own_ode_pairs():
    info = DataInfo(name="t", shape=(2,), kind="vector")
    torch.manual_seed(0)
    model = unigen.build_model("rectified-flow", info, {"num_reflows": 2, "reflow_every": 3, "reflow_pairs": 50,
                                                         "reflow_steps": 8, "sampler": "rk4", "hidden": 16})
    model.after_step("main", 1)  # not yet
    assert int(model.reflow_round) == 0 and model.reflow_report() == []
    model.after_step("main", 2)  # after 3 steps: round 1
    assert int(model.reflow_round) == 1 and len(model.reflow_report()) == 1
    with torch.no_grad():
        assert torch.allclose(model.reverse(model.coupling_x1, 8), model.coupling_x0, atol=1e-5)
    x0, x1 = model.pairs(unigen.Batch(torch.zeros(10, 2)))
    rows = (x0[:, None] == model.coupling_x0[None]).all(-1) & (x1[:, None] == model.coupling_x1[None]).all(-1)
    assert rows.any(1).all()  # every training pair is one coupled (x^, z) pair
    model.after_step("main", 5)
    assert int(model.reflow_round) == 2
    model.after_step("main", 8)  # num_reflows reached
    assert int(model.reflow_round) == 2
    assert attrs.asdict(model.config)["num_reflows"] == 2


def _graph_nodes(t: torch.Tensor) -> int:
    """The autograd nodes the tensor's graph keeps alive (what backward traverses), leaves' AccumulateGrad aside."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(f for f, _ in node.next_functions)
    return sum(type(node).__name__ != "AccumulateGrad" for node in seen)


@pytest.mark.parametrize("adjoint", [None, False])
def test_cnf_training_on_images_keeps_no_graph_per_solver_step_by_default(adjoint):
    """The CNF's default on images trains with the adjoint method (FFJORD's code): the loss keeps a graph of
    a fixed size, however many dopri5 steps the likelihood's solve takes (backpropagating through the steps
    kept one graph per evaluation and grew past 19.8 GB on 8x8 digits). Mutation: ``adjoint=False``."""
    info = DataInfo(name="t", shape=(1, 8, 8), kind="image", levels=17)
    overrides = [] if adjoint is None else [f"adjoint={str(adjoint).lower()}"]
    model = unigen.build_model("cnf", info, overrides=overrides)
    evaluations: list[int] = []
    model.field.register_forward_hook(lambda m, i, out: evaluations.append(1) and None)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    loss = model.loss(unigen.plugin.Batch(x=x))
    nodes = _graph_nodes(loss)
    assert len(evaluations) > 6 and loss.requires_grad  # an adaptive solve of several steps, differentiable
    if adjoint is None:
        assert model.uses_adjoint() and nodes < 30  # the solve is one node, whatever its number of steps
    else:  # one UNet graph (hundreds of nodes) per evaluation
        assert not model.uses_adjoint() and nodes > 100 * len(evaluations)
