"""I-JEPA's invariants: no gradient into the EMA target, the exact EMA rule and its momentum
schedule, masks that never show the context a target patch, and the non-sampler contract."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen.testing import quick_train
from unigen_world.jepa import JEPAConfig, ema_momentum, random_resized_crop
from unigen_world.masks import sample_masks
from unigen_world.patches import patchify, unpatchify
from unigen_world.probe import collapse_stats

SMALL = JEPAConfig(dim=32, depth=2, heads=2, pred_dim=16, pred_depth=1, pred_heads=2)


@pytest.fixture(scope="module")
def digits():
    return unigen.load_dataset("digits")


def _model(digits, config=SMALL, seed=0):
    torch.manual_seed(seed)
    return unigen.build_model("jepa", digits.info, config)


@given(a=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_random_resized_crop_covers_the_drawn_area_of_the_image(a, seed):
    """A crop of area fraction a (aspect 1) of a horizontal ramp spans sqrt(a) of it, up to the border's
    half pixel at each end; values stay within the image's (bilinear: convex combinations); shape and
    dtype are kept; the whole image at aspect 1 is the identity."""
    torch.manual_seed(seed)
    w = 16
    ramp = torch.arange(w, dtype=torch.float64).expand(3, 2, w, w).clone()  # x[..., i, j] = j
    out = random_resized_crop(ramp, (a, a), (1.0, 1.0))
    assert out.shape == ramp.shape and out.dtype == torch.float64
    assert out.min() >= 0 and out.max() <= w - 1
    span = out[..., 0, -1] - out[..., 0, 0]  # (3, 2) the row's extent, the same in every row and channel
    side = a**0.5 * (w - 1)
    assert torch.all(span <= side + 1e-9) and torch.all(span >= side - 1 - 1e-9), (a, span, side)
    assert torch.allclose(out, out[:, :, :1].expand_as(out))  # no vertical change on a horizontal ramp
    assert torch.equal(random_resized_crop(ramp, (1.0, 1.0), (1.0, 1.0)), ramp)


def test_training_crops_only_with_crop_scale(digits, monkeypatch):
    import unigen_world.jepa as jepa

    batch, seen = digits.batch(slice(0, 8)), []
    monkeypatch.setattr(jepa, "random_resized_crop", lambda x, scale: seen.append(scale) or torch.full_like(x, 7.0))
    for crop, calls, value in ((None, [], None), ((0.3, 0.5), [(0.3, 0.5)], 7.0)):
        model, read = _model(digits, attrs.evolve(SMALL, crop_scale=crop)), []
        model.prediction_loss = lambda x, context, targets: read.append(x) or torch.zeros(())
        model.loss(batch)
        assert seen == calls and seen.clear() is None
        assert torch.equal(read[0], batch.x if value is None else torch.full_like(batch.x, value))


def test_target_encoder_receives_no_gradient(digits):
    model = _model(digits)
    model.loss(digits.batch(slice(0, 16))).backward()
    assert all(not p.requires_grad and p.grad is None for p in model.target_encoder.parameters())
    grads = [p.grad for p in list(model.context_encoder.parameters()) + list(model.predictor.parameters())]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    target_ids = {id(p) for p in model.target_encoder.parameters()}
    assert not any(id(p) in target_ids for ps in model.parameter_groups().values() for p in ps)


def test_target_follows_the_ema_rule_exactly_through_the_trainer(digits):
    """After the trainer's first optimizer step (k = 0, m_0 = ema_start): theta_bar_1 = m_0 theta_bar_0
    + (1 - m_0) theta_1, with theta_1 the context encoder after that step."""
    config = attrs.evolve(SMALL, ema_start=0.9, ema_end=1.0, ema_steps=10)
    model = _model(digits, config)
    before = [p.detach().double().clone() for p in model.target_encoder.parameters()]
    theta0 = [p.detach().clone() for p in model.context_encoder.parameters()]
    quick_train("jepa", digits, steps=1, batch_size=16, model=model)
    assert any(not torch.equal(a, b) for a, b in zip(theta0, model.context_encoder.parameters()))
    for tb0, tb1, th in zip(before, model.target_encoder.parameters(), model.context_encoder.parameters()):
        expected = 0.9 * tb0 + 0.1 * th.detach().double()
        torch.testing.assert_close(tb1.detach().double(), expected, rtol=0, atol=1e-7)


def test_update_target_is_the_ema_formula(digits):
    model = _model(digits)
    with torch.no_grad():
        for p in model.context_encoder.parameters():
            p.add_(torch.randn_like(p))
    old = [p.detach().clone() for p in model.target_encoder.parameters()]
    model.update_target(0.75)
    for tb, t0, th in zip(model.target_encoder.parameters(), old, model.context_encoder.parameters()):
        torch.testing.assert_close(tb, 0.75 * t0 + 0.25 * th, rtol=1e-6, atol=1e-6)


@given(start=st.floats(0.0, 1.0), end=st.floats(0.0, 1.0), steps=st.integers(1, 10_000))
def test_momentum_schedule_is_linear_and_clipped(start, end, steps):
    assert ema_momentum(0, start, end, steps) == start
    assert ema_momentum(steps, start, end, steps) == pytest.approx(end)
    assert ema_momentum(10 * steps, start, end, steps) == pytest.approx(end)
    ks = [0, steps // 3, steps // 2, steps]
    ms = [ema_momentum(k, start, end, steps) for k in ks]
    assert all((b - a) * (end - start) >= -1e-12 for a, b in zip(ms, ms[1:]))


def test_momentum_ramps_over_the_whole_run_the_trainer_reports(digits):
    """I-JEPA ramps 0.996 -> 1 over the run; a fixed 2,000-step ramp froze the target after step 2,000."""
    model = _model(digits)
    model.on_train_start(10_000, 0)
    m = [model.momentum(k) for k in (0, 2000, 5000, 9998, 9999)]
    assert m[0] == 0.996 and 0.996 < m[1] < m[2] < m[3] < 1 and m[4] == pytest.approx(1.0)
    assert m[2] == pytest.approx(0.996 + 0.004 * 5000 / 9999)
    fixed = _model(digits, attrs.evolve(SMALL, ema_steps=100))  # a fixed length stays the user's choice
    fixed.on_train_start(10_000, 0)
    assert fixed.momentum(100) == 1.0


def test_a_short_default_ramp_moves_the_target_off_its_initialisation(digits):
    """The target keeps prod_k m_k of its initial weights. With the paper's m_0 = 0.996 a 300-step ramp
    to 1 kept 0.55 of them (pure defaults on fashion-mnist: the target probed 0.650 after 300 steps, from
    0.682 untrained, while the context encoder probed 0.731); the default m_0 keeps at most e^-1.5."""
    model = _model(digits)
    for total in (2, 10, 300, 751, 10_000):
        model.on_train_start(total, 0)
        kept = float(np.prod([model.momentum(k) for k in range(total)]))
        assert kept <= np.exp(-1.5), (total, kept)
    assert model.momentum(0) == 0.996  # long runs keep the paper's m_0
    explicit = _model(digits, attrs.evolve(SMALL, ema_start=0.996))  # a set m_0 stays the user's choice
    explicit.on_train_start(300, 0)
    assert explicit.momentum(0) == 0.996


def test_the_trainer_tells_the_model_the_runs_length(digits):
    model = _model(digits)
    seen = []
    model.on_train_start = lambda total_steps, step: seen.append((total_steps, step))
    quick_train("jepa", digits, steps=2, batch_size=8, model=model)
    assert seen == [(2, 0)]


@given(
    gh=st.integers(2, 8), gw=st.integers(2, 8), num_targets=st.integers(1, 4),
    lo=st.floats(0.05, 0.3), batch=st.integers(1, 12), seed=st.integers(0, 1000),
)
def test_masks_never_show_the_context_a_target_patch(gh, gw, num_targets, lo, batch, seed):
    torch.manual_seed(seed)
    context, targets = sample_masks(batch, gh, gw, num_targets=num_targets, target_scale=(lo, lo + 0.05),
                                    target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0), min_context=1)
    assert context.shape[0] == targets.shape[0] == batch and targets.shape[1] == num_targets
    assert context.shape[1] >= 1
    for b in range(batch):
        ctx, tgt = set(context[b].tolist()), set(targets[b].flatten().tolist())
        assert not ctx & tgt
        assert len(ctx) == context.shape[1]  # no repeated context patch
        assert all(0 <= i < gh * gw for i in ctx | tgt)
        for block in targets[b]:  # each target is a full rectangle of the batch's block size
            rows, cols = block // gw, block % gw
            h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
            assert h * w == block.numel() == len(set(block.tolist()))


def test_context_encoding_ignores_the_target_pixels(digits):
    model = _model(digits).eval()
    x = digits.x[:8]
    context, targets = model.masks(8)
    patches = patchify(x, model.p)
    changed = patches.clone()
    for b in range(8):
        changed[b, targets[b].flatten()] = torch.randn_like(changed[b, targets[b].flatten()]) * 5
    with torch.no_grad():
        a = model.predictor(model.context_encoder(patches, context), context, targets)
        b = model.predictor(model.context_encoder(changed, context), context, targets)
    assert torch.equal(a, b)


@given(c=st.integers(1, 3), g=st.integers(1, 4), p=st.integers(1, 4))
def test_unpatchify_inverts_patchify(c, g, p):
    x = torch.randn(2, c, g * p, g * p)
    assert torch.equal(unpatchify(patchify(x, p), p, (c, g * p, g * p)), x)


def test_not_a_sampler_and_embeddings_have_their_shapes(digits):
    model = _model(digits).eval()
    x = digits.x[:5]
    for op, args in ((model.sample, (3,)), (model.logprob, (x,))):
        with pytest.raises(unigen.UnsupportedOperation, match="jepa does not support .*: I-JEPA"):
            op(*args)
    assert model.forward(x).shape == (5, 16, 32)
    assert model.latent(x).shape == (5, 32)


def test_probe_features_concatenate_the_last_blocks_pooled_outputs(digits):
    """probe_blocks k: the target encoder's last k block outputs, each through the final LayerNorm and
    average-pooled, concatenated oldest first; the last one is the mean of ``forward``."""
    model = _model(digits, attrs.evolve(SMALL, probe_blocks=2)).eval()
    x = digits.x[:5]
    z = model.latent(x)
    assert z.shape == (5, 64)
    torch.testing.assert_close(z[:, 32:], model.forward(x).mean(1))
    enc = model.target_encoder
    first = enc.norm(enc.blocks[0](enc.embed(patchify(x, model.p)) + enc.pos)).mean(1)  # block 1's output, by hand
    torch.testing.assert_close(z[:, :32], first)
    with pytest.raises(ValueError, match="probe_blocks 3 exceeds the encoder's depth 2"):
        attrs.evolve(SMALL, probe_blocks=3)


def test_collapse_is_detected():
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(200, 16))
    assert collapse_stats(spread)["collapsed"] is False
    same = np.tile(rng.normal(size=(1, 16)), (200, 1)) + 1e-9 * rng.normal(size=(200, 16))
    stats = collapse_stats(same)
    assert stats["collapsed"] is True and stats["embedding_std"] < 1e-3
