"""Capabilities are read from the model instance, validated when a class is defined, and shown as varying."""

from __future__ import annotations

import json

import pytest

import unigen
from unigen.cli import main
from unigen.metrics import EvalContext, nll
from unigen.testing import untrained

HOST = unigen.default_host()


def _nll_kind(model, dataset="digits"):
    ctx = EvalContext(model=model, record={"dataset": dataset}, host=HOST, n=2, batch_size=2)
    return nll(ctx)["nll_kind"]


def test_score_sde_eval_reports_an_estimate_on_images(tmp_path, capsys):
    run = tmp_path / "sde"
    args = ["--set", "rtol=0.01", "--set", "atol=0.01", "--set", "width=8"]
    assert main(["train", "score-sde", "--data", "digits", "--steps", "1", "--out", str(run), "--quiet", *args]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "nll", "--n", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nll_kind"] == "estimate" and out["nll_bits_per_dim"] is not None


@pytest.mark.parametrize("trace,kind", [("auto", "estimate"), ("hutchinson", "estimate"), ("exact", "exact")])
def test_flow_matching_on_images_is_an_estimate_with_one_probe_and_exact_with_the_exact_trace(trace, kind):
    model = untrained("flow-matching", overrides=[f"trace={trace}", "rtol=0.01", "atol=0.01", "width=8"])
    assert model.logprob_kind == kind and _nll_kind(model) == kind


def test_cnf_on_two_dimensional_data_is_exact():
    assert untrained("cnf", "moons").logprob_kind == "exact"


def test_a_vae_with_several_logprob_samples_reports_an_estimate():
    assert _nll_kind(untrained("vae", overrides=["logprob_samples=4"])) == "estimate"
    assert _nll_kind(untrained("vae")) == "bound"


def test_models_lists_the_default_capability_first_and_that_it_varies(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["flow-matching"]["logprob"] == "exact"
    assert rows["flow-matching"]["logprob_kinds"] == ["exact", "estimate"]
    assert rows["vae"]["logprob_kinds"] == ["bound", "estimate"]
    assert rows["ddpm"]["logprob_kinds"] == ["bound"]
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "exact|estimate" in table and "bound|estimate" in table


@pytest.mark.parametrize("attr,value", [
    ("logprob_kind", "exakt"), ("paradigm", "magic"), ("data_kinds", ("images",)), ("data_kinds", "image"),
    ("logprob_variants", {"estmate": {}}), ("bijective", "yes"), ("needs_settings", {"teacher": {"beta": 0.1}}),
])
def test_a_capability_outside_the_known_values_is_refused_when_the_class_is_defined(attr, value):
    with pytest.raises(TypeError, match=attr.split("_")[0]):
        type("Bad", (unigen.GenerativeModel,), {attr: value})


def test_a_vector_only_model_is_refused_on_images_and_on_captioned_data(tmp_path, capsys):
    for data in ("digits", "digits-captions"):
        run = tmp_path / data
        assert main(["train", "energy-matching", "--data", data, "--steps", "1", "--out", str(run), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "does not take" in err and "vector" in err, err
        assert not run.exists()
    with pytest.raises(unigen.DataError, match="does not take image data"):
        unigen.build_model("energy-matching", unigen.load_dataset("digits"))


def test_captioned_images_are_taken_by_text_image_and_image_models():
    data = unigen.load_dataset("digits-captions")
    assert data.info.kinds == ("image", "text-image")
    unigen.build_model("transfusion", data)
    unigen.build_model("vae", data)
