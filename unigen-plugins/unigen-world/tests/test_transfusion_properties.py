"""Transfusion's invariants: the attention mask (causal text, bidirectional image), the mixed loss
as the sum of its two defined parts, the noising convention, and the text tokenizer and captions."""

from __future__ import annotations

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen.data import text as tokens
from unigen_world.patches import patchify
from unigen_world.transfusion import TransfusionConfig

SMALL = TransfusionConfig(dim=32, depth=2, heads=2)


@pytest.fixture(scope="module")
def data():
    return unigen.load_dataset("digits-captions")


def _model(data, config=SMALL, seed=0):
    torch.manual_seed(seed)
    return unigen.build_model("transfusion", data.info, config).eval()


@pytest.mark.parametrize("image_first", [False, True])
def test_attention_is_causal_over_text_and_full_within_the_image(data, image_first):
    model = _model(data)
    T, P = model.T, model.P
    text = data.text[:2]
    mask = model.attention_mask(text, torch.tensor([image_first] * 2))[0]  # (L, L)
    txt = torch.arange(1 + P, 1 + P + T) if image_first else torch.arange(T)
    img = torch.arange(1, 1 + P) if image_first else torch.arange(T + 1, T + 1 + P)
    real = txt[text[0] != tokens.PAD]  # the caption's positions (PAD keys are hidden)
    sub = mask[real][:, real]
    assert torch.equal(sub, torch.ones_like(sub).tril())  # causal over text
    assert mask[img][:, img].all()  # bidirectional within the image
    if image_first:
        assert mask[real][:, img].all() and not mask[img][:, txt].any()  # text reads the image, not vice versa
    else:
        assert mask[img][:, real].all() and not mask[txt][:, img].any()  # the image reads its caption
    pads = txt[text[0] == tokens.PAD]
    assert len(pads) > 0
    for j in pads:  # a PAD key is seen by nobody but itself
        assert mask[:, j].sum() == 1 and mask[j, j]


def test_outputs_respect_the_mask(data):
    model = _model(data)
    torch.nn.init.normal_(model.patch_out.weight)  # zero at initialisation: give the velocity head weights
    b = 2
    text, x = data.text[:b].clone(), data.x[:b]
    patches = patchify(x, model.p)
    t, first = torch.full((b,), 0.5), torch.zeros(b, dtype=torch.bool)
    with torch.no_grad():
        logits, vel = model.run(text, patches, t, first)
        text2 = text.clone()
        text2[:, 10] = tokens.encode(["q"])[0, 1]
        logits2, vel2 = model.run(text2, patches, t, first)
        patches2 = patches.clone()
        patches2[:, -1] += 1.0  # change the last patch
        logits3, vel3 = model.run(text, patches2, t, first)
    assert torch.equal(logits[:, :10], logits2[:, :10]) and not torch.allclose(logits[:, 10:], logits2[:, 10:])
    assert not torch.allclose(vel, vel2)  # the image reads the caption
    assert torch.equal(logits, logits3)  # the caption does not read the image (caption first)
    assert not torch.allclose(vel3[:, 0], vel[:, 0])  # the first patch reads the last: bidirectional


def test_mixed_loss_is_the_sum_of_its_two_defined_parts(data):
    model = _model(data, attrs.evolve(SMALL, image_loss_weight=2.5)).train()
    batch = data.batch(slice(0, 8))
    torch.manual_seed(7)
    loss = model.loss(batch)
    torch.manual_seed(7)
    parts = model.loss_terms(batch)
    torch.testing.assert_close(loss, parts["text"] + 2.5 * parts["image"], rtol=0, atol=0)
    # Each part as defined, from the network's raw outputs with the random choices fixed.
    b = 8
    t, noise = torch.rand(b), torch.randn_like(batch.x)
    first = torch.tensor([True, False] * 4)
    drop = torch.tensor([False, False, False, True] * 2)
    parts = model.loss_terms(batch, t=t, noise=noise, image_first=first, drop=drop)
    text = torch.where(drop[:, None], tokens.encode([""] * b, model.T), batch.text)
    x_t = (1 - t.view(b, 1, 1, 1)) * batch.x + t.view(b, 1, 1, 1) * noise
    logits, vel = model.run(text, patchify(x_t, model.p), t, first)
    image = ((vel - patchify(noise - batch.x, model.p)) ** 2).mean()
    keep = ~drop
    tgt = batch.text[keep, 1:]
    lg = logits[keep, :-1]
    ce = F.cross_entropy(lg[tgt != tokens.PAD], tgt[tgt != tokens.PAD])
    torch.testing.assert_close(parts["image"], image)
    torch.testing.assert_close(parts["text"], ce)


def test_forward_noising_follows_the_time_convention(data):
    model = _model(data)
    x = data.x[:4]
    assert torch.equal(model.forward(x, torch.zeros(4)), x)  # t=0 is data
    torch.manual_seed(0)
    eps = torch.randn_like(x)
    torch.manual_seed(0)
    assert torch.allclose(model.forward(x, torch.ones(4)), eps)  # t=1 is noise


@given(st.text(alphabet=tokens.ALPHABET, max_size=20))
def test_tokenizer_round_trips(s):
    assert tokens.decode(tokens.encode([s], 22)) == [s]


def test_captions_dataset_and_prompt_validation(data):
    assert data.info.vocab_size == tokens.VOCAB_SIZE and data.info.text_len == data.text.shape[1]
    assert tokens.decode(data.text[:20]) == [data.captions[int(y)] for y in data.y[:20]]
    with pytest.raises(unigen.ConfigError, match="not in the text alphabet"):
        unigen.model_config("transfusion", {"prompt": "a digit \u00e9"})
    with pytest.raises(unigen.ConfigError, match="longer than"):
        unigen.build_model("transfusion", data.info, {"prompt": "a" * 40})


def test_prompted_samples_and_captions_have_their_shapes(data):
    model = _model(data, attrs.evolve(SMALL, prompt="a handwritten digit three"))
    torch.manual_seed(0)
    x = model.sample(3, steps=2)
    assert x.shape == (3, 1, 8, 8) and x.abs().max() <= 1
    caps = model.generate_captions(4)
    assert (caps[:, 0] == tokens.BOS).all() and (caps == tokens.EOS).any(1).all()
    assert len(model.caption(data.x[:2])) == 2
    with pytest.raises(unigen.UnsupportedOperation, match="transfusion does not support logprob"):
        model.logprob(data.x[:2])
