"""Metrics: the mathematics of FID/KID/IS/precision-recall on feature matrices, the evaluator network
(determinism, cache, accuracy), the sanity properties on real data and `unigen eval`."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen.cli import main
from unigen.metrics import EvalContext, quality, scores
from unigen.metrics import evaluator as ev
from unigen.testing import untrained

SAMPLE_KEYS = ("fid", "kid", "kid_std", "is", "is_std", "precision", "recall")
EVAL_KEYS = ("nll_bits_per_dim", "nll_kind", *SAMPLE_KEYS)


def _spd(g: torch.Generator, d: int, rank: int | None = None) -> torch.Tensor:
    a = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return a @ a.T / (rank or d)


# -- FID ------------------------------------------------------------------------------------------
@given(d=st.integers(1, 12), seed=st.integers(0, 10_000), rank=st.integers(1, 12))
def test_trace_sqrt_product_matches_scipy_sqrtm(d, seed, rank):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(seed)
    s1, s2 = _spd(g, d), _spd(g, d, min(rank, d))  # s2 may be singular
    ref = np.trace(scipy_linalg.sqrtm(s1.numpy() @ s2.numpy())).real
    assert float(scores.trace_sqrt_product(s1, s2)) == pytest.approx(ref, rel=1e-5, abs=1e-6)


@given(mu1=st.floats(-3, 3), mu2=st.floats(-3, 3), s1=st.floats(0.1, 3), s2=st.floats(0.1, 3))
def test_frechet_distance_of_1d_gaussians_is_closed_form(mu1, mu2, s1, s2):
    # W2^2 of N(mu1, s1^2) and N(mu2, s2^2) = (mu1 - mu2)^2 + (s1 - s2)^2
    fd = scores.frechet_distance(torch.tensor([mu1]), torch.tensor([[s1**2]]), torch.tensor([mu2]), torch.tensor([[s2**2]]))
    assert fd == pytest.approx((mu1 - mu2) ** 2 + (s1 - s2) ** 2, rel=1e-7, abs=1e-9)


def test_fid_is_zero_on_identical_sets_symmetric_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 16, generator=g), torch.randn(500, 16, generator=g)
    assert scores.fid(a, a) < 1e-8
    assert scores.fid(a, b) == pytest.approx(scores.fid(b, a), rel=1e-9)
    shifts = [scores.fid(a, b + s) for s in (0.0, 0.2, 0.5, 1.0)]
    assert shifts == sorted(shifts) and shifts[0] < 0.1 * shifts[-1]
    # the mean term is exact: a shift of every coordinate by s adds 16 s^2
    assert scores.fid(a, a + 0.5) == pytest.approx(16 * 0.25, rel=1e-9)


# -- KID, IS, precision/recall ----------------------------------------------------------------------
def test_mmd2_unbiased_matches_the_definition():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    k = lambda a, b: (a @ b / 3 + 1) ** 3
    sxx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    syy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    sxy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert scores.mmd2_unbiased(x, y) == pytest.approx(float(sxx + syy - 2 * sxy), rel=1e-10)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(600, 16, generator=g), torch.randn(600, 16, generator=g)
    same, same_std = scores.kid(a, b, subsets=20, subset_size=300)
    shifted, _ = scores.kid(a, b + 0.3, subsets=20, subset_size=300)
    assert abs(same) < max(3 * same_std, 1e-3) and shifted > 20 * abs(same) and shifted > 0


def test_kid_std_is_the_population_std_of_the_subset_estimates():
    """torchmetrics and torch-fidelity report the population std (divisor n) of the subset MMD^2s."""
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g) + 0.2
    mean, std = scores.kid(a, b, subsets=6, subset_size=10, seed=7)
    sub = torch.Generator().manual_seed(7)  # the same subsets kid draws
    values = []
    for _ in range(6):
        i = torch.randperm(40, generator=sub)[:10]
        j = torch.randperm(30, generator=sub)[:10]
        values.append(scores.mmd2_unbiased(a[i].double(), b[j].double()))
    mu = sum(values) / 6
    assert mean == pytest.approx(mu, rel=1e-12)
    assert std == pytest.approx(math.sqrt(sum((v - mu) ** 2 for v in values) / 6), rel=1e-12)


def test_inception_score_bounds():
    k = 10
    confident_uniform = torch.eye(k).repeat(20, 1)  # each class equally often, fully confident
    assert scores.inception_score(confident_uniform, splits=1)[0] == pytest.approx(k, rel=1e-6)
    assert scores.inception_score(torch.full((200, k), 1 / k))[0] == pytest.approx(1.0)
    one_class = torch.zeros(200, k)
    one_class[:, 3] = 1
    assert scores.inception_score(one_class)[0] == pytest.approx(1.0)


def test_knn_radii_match_brute_force_and_batching_changes_nothing():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(50, 4, generator=g, dtype=torch.float64)
    d = torch.cdist(f, f)
    brute = d.sort(1).values[:, 3]  # index 0 is the point itself
    assert torch.allclose(scores.knn_radii(f, 3), brute)
    assert torch.allclose(scores.knn_radii(f, 3, batch=7), brute)


def test_precision_recall_of_a_set_against_itself_is_one_and_of_far_sets_zero():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(300, 8, generator=g)
    assert scores.precision_recall(a, a) == (1.0, 1.0)
    assert scores.precision_recall(a, a + 100) == (0.0, 0.0)
    # a collapsed generator (one mode) is precise but has no recall
    collapsed = a[:1].repeat(300, 1) + 1e-3 * torch.randn(300, 8, generator=g)
    p, r = scores.precision_recall(a, collapsed)
    assert p == 1.0 and r < 0.05


# -- the evaluator ----------------------------------------------------------------------------------
def test_evaluator_training_is_deterministic_for_a_seed():
    data, test = unigen.load_dataset("digits"), unigen.load_dataset("digits", "test")
    a, _ = ev.train_net(data, test, seed=5, steps=15)
    b, _ = ev.train_net(data, test, seed=5, steps=15)
    c, _ = ev.train_net(data, test, seed=6, steps=15)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_evaluator_cache_is_written_once_read_back_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIGEN_CACHE", str(tmp_path))
    trained = []
    real_train = ev.train_net

    def short(train, test, **kw):
        trained.append(1)
        return real_train(train, test, **{**kw, "steps": 5})

    monkeypatch.setattr(ev, "train_net", short)
    host = unigen.default_host()
    first = ev.dataset_evaluator("digits", host, seed=3)
    (path,) = (tmp_path / "evaluators").glob("digits-*.safetensors")  # named by the data's content hash
    assert not list(path.parent.glob(".*tmp*"))
    second = ev.dataset_evaluator("digits", host, seed=3)
    assert len(trained) == 1 and second.accuracy == first.accuracy
    x = unigen.load_dataset("digits", "test").x[:20]
    assert torch.equal(first(x)[0], second(x)[0])
    path.write_bytes(b"not a safetensors file")
    messages = []
    ev.dataset_evaluator("digits", host, seed=3, log=messages.append)
    assert len(trained) == 2 and any("cannot read cached evaluator" in m for m in messages)


def test_features_are_computed_in_batches_with_the_same_result():
    net, _ = ev.train_net(unigen.load_dataset("digits"), unigen.load_dataset("digits", "test"), steps=3)
    e = ev.Evaluator(net, "t", None)
    x = unigen.load_dataset("digits", "test").x[:100]
    f1, p1 = e(x, batch_size=100)
    f2, p2 = e(x, batch_size=7)
    assert f1.shape == (100, ev.FEATURES) and p1.shape == (100, 10)
    assert torch.allclose(f1, f2, atol=1e-5) and torch.allclose(p1, p2, atol=1e-6)


def test_a_user_torchscript_evaluator_is_used_and_features_only_means_no_inception_score(tmp_path):
    class Feats(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :16] * 2

    batch = torch.export.Dim("batch")
    program = torch.export.export(Feats(), (torch.zeros(4, 1, 8, 8),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(tmp_path / "feats.pt2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Feats()).save(str(tmp_path / "feats.pt"))
    model = untrained("vae")
    host = unigen.default_host()
    for name in ("feats.pt2", "feats.pt"):
        ctx = EvalContext(model=model, record={"dataset": "digits"}, host=host, n=120, batch_size=50,
                          evaluator=str(tmp_path / name))
        out = quality.fid(ctx)
        assert out["fid"] > 0 and out["evaluator"] == f"user module {name}"
        is_out = quality.inception(ctx)
        assert is_out["is"] is None and "no class probabilities" in is_out["is_reason"]
    (tmp_path / "bad.pt").write_text("not a module")
    with pytest.raises(unigen.UnigenError, match="not a TorchScript module"):
        ev.user_evaluator(tmp_path / "bad.pt")
    with pytest.raises(unigen.UnigenError, match="evaluator file not found"):
        ev.user_evaluator(tmp_path / "missing.pt")


def test_sample_metrics_report_the_reason_for_a_model_that_cannot_sample_or_vector_data():
    host = unigen.default_host()

    class NoSampler(unigen.GenerativeModel):
        family = "test"

    info = unigen.load_dataset("digits").info
    ctx = EvalContext(model=NoSampler(None, info), record={"dataset": "digits"}, host=host, n=10,
                      evaluator=None)
    ctx.cache["evaluator"] = ev.Evaluator(ev.EvaluatorNet(1, 8, 8, 10), "t", None)
    for metric in ("fid", "kid", "is", "pr"):
        out = host.metrics[metric].compute(ctx)
        reason = next(v for k, v in out.items() if k.endswith("_reason"))
        assert "does not support sample" in reason and all(out[k] is None for k in out if not k.endswith("_reason"))
    vec = untrained("vae", "moons")
    out = host.metrics["fid"].compute(EvalContext(model=vec, record={"dataset": "moons"}, host=host, n=10))
    assert out["fid"] is None and "not image data" in out["fid_reason"]


# -- the sanity properties on real data (the trained digits evaluator, cached) ----------------------
@pytest.fixture(scope="module")
def digits_features():
    e = ev.dataset_evaluator("digits", unigen.default_host(), seed=0)
    train, test = unigen.load_dataset("digits"), unigen.load_dataset("digits", "test")
    return e, train, test, e(train.x)[0], e(test.x)


@pytest.mark.slow
def test_digits_evaluator_accuracy_and_fid_sanity(digits_features):
    e, train, test, f_train, (f_test, p_test) = digits_features
    assert e.accuracy >= 0.95
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(len(test), *test.x.shape[1:], generator=g) * 2 - 1
    fid_test = scores.fid(f_train, f_test)
    fid_noise = scores.fid(f_train, e(noise)[0])
    assert fid_test < 0.05 * fid_noise
    assert scores.inception_score(p_test)[0] > 8.0  # confident and balanced on real digits
    fids = []
    for scale in (0.0, 0.1, 0.2, 0.4, 0.8, 1.6):
        noisy = test.x + scale * torch.randn(test.x.shape, generator=g)
        fids.append(scores.fid(f_train, e(noisy)[0]))
    assert fids == sorted(fids) and fids[-1] > 10 * fids[0]
    kid_test, kid_std = scores.kid(f_train, f_test, subset_size=148, subsets=50)
    kid_noise, _ = scores.kid(f_train, e(noise)[0], subset_size=148, subsets=50)
    assert abs(kid_test) < 0.02 * kid_noise
    assert scores.precision_recall(f_train, f_train) == (1.0, 1.0)


# -- `unigen eval` end to end ------------------------------------------------------------------------
def _eval_json(capsys, run_dir, n=300):
    code = main(["eval", str(run_dir), "--metrics", "nll,fid,kid,is,pr", "--n", str(n), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


@pytest.mark.slow
def test_eval_every_key_present_and_training_lowers_fid(capsys, tmp_path):
    for steps in (1, 300):
        assert main(["train", "vae", "--data", "digits", "--steps", str(steps), "--out", str(tmp_path / f"s{steps}"),
                     "--quiet"]) == 0
    capsys.readouterr()
    untrained, trained = _eval_json(capsys, tmp_path / "s1"), _eval_json(capsys, tmp_path / "s300")
    for result in (untrained, trained):
        assert all(k in result for k in EVAL_KEYS), sorted(result)
        assert all(isinstance(result[k], float) and math.isfinite(result[k]) for k in SAMPLE_KEYS)
        assert result["nll_kind"] == "bound" and result["evaluator_test_accuracy"] >= 0.95
    assert trained["fid"] < 0.5 * untrained["fid"]
    assert trained["kid"] < untrained["kid"] and trained["is"] > untrained["is"]


def test_eval_of_a_model_without_likelihood_reports_the_reason(capsys, tmp_path):
    if "gan" not in unigen.default_host().models:
        pytest.skip("needs the GAN family (unigen-gan)")
    assert main(["train", "gan", "--data", "digits", "--steps", "1", "--batch-size", "16", "--out", str(tmp_path / "g"),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "g"), "--metrics", "nll", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nll_bits_per_dim"] is None and out["nll_kind"] == "none" and "likelihood" in out["nll_reason"]


def test_a_deadline_stops_sampling_and_nll_early_and_says_how_many():
    import time

    host = unigen.default_host()
    ctx = EvalContext(model=untrained("vae"), record={"dataset": "digits"}, host=host, n=400, batch_size=50,
                      deadline=time.perf_counter() - 1)
    ctx.cache["evaluator"] = ev.Evaluator(ev.EvaluatorNet(1, 8, 8, 10), "t", None)
    out = quality.fid(ctx)
    assert out["sample_n"] == 100 and math.isfinite(out["fid"])  # two chunks at least
    assert host.metrics["nll"].compute(ctx)["nll_n"] == 50
    ctx.deadline = None
    assert quality.kid(EvalContext(model=ctx.model, record=ctx.record, host=host, n=400, batch_size=50,
                                   cache={"evaluator": ctx.cache["evaluator"]}))["sample_n"] == 400
