"""The contract kit's own tests: it passes correct models, fails each mutant, runs from the command line,
and its config strategies follow the validators."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from attrs import validators as v
from hypothesis import given

from unigen import ConfigError
from unigen import config as cfg
from unigen.testing.strategies import configs, field_rule, invalid_values

MUTANTS = Path(__file__).with_name("kit_mutants.py")
RUN_KIT = """
import kit_mutants
from unigen.testing import contract_tests

TestToys = contract_tests(*kit_mutants.MODELS, plugins=(kit_mutants,))
"""


@pytest.fixture(scope="module")
def kit_report(tmp_path_factory) -> dict[tuple[str, str], str]:
    """(check, model id) -> PASSED/FAILED/SKIPPED for the whole kit run on the toy models."""
    tmp = tmp_path_factory.mktemp("kit")
    (tmp / "kit_mutants.py").write_text(MUTANTS.read_text())
    (tmp / "test_toys.py").write_text(RUN_KIT)
    out = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          "test_toys.py"], cwd=tmp, capture_output=True, text=True, timeout=600).stdout
    report = {}
    for outcome, check, model_id in re.findall(r"^(PASSED|FAILED|SKIPPED)\S* test_toys.py::TestToys::(\w+)\[([\w-]+)\]",
                                               out, re.M):
        report[(check, model_id)] = outcome
    assert report, out[-3000:]
    return report


def _failed(report, model_id):
    return sorted(check for (check, mid), outcome in report.items() if mid == model_id and outcome == "FAILED")


@pytest.mark.parametrize("model_id", ["affine", "maf"])
def test_the_kit_passes_correct_flows(kit_report, model_id):
    assert _failed(kit_report, model_id) == []
    assert kit_report[("test_bijection_inverts_and_logprob_is_the_change_of_variables", model_id)] == "PASSED"
    assert kit_report[("test_exact_density_integrates_to_one", model_id)] == "PASSED"


@pytest.mark.parametrize("model_id,checks", [
    ("flipped-logdet", ["test_bijection_inverts_and_logprob_is_the_change_of_variables",
                        "test_exact_density_integrates_to_one"]),
    ("shifted-made", ["test_bijection_inverts_and_logprob_is_the_change_of_variables",
                      "test_exact_density_integrates_to_one"]),
    ("seedless", ["test_samples_are_in_range_and_follow_the_seed"]),
    ("offset", ["test_exact_density_integrates_to_one"]),
])
def test_the_kit_fails_each_mutant_on_the_checks_that_catch_it(kit_report, model_id, checks):
    assert _failed(kit_report, model_id) == checks


def test_pytest_runs_the_contract_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pytest", "--unigen-contract=vae", "-p", "no:xdist", "-p",
                          "no:cacheprovider", "-q", "-k", "round_trips or refused_by_name"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600).stdout
    assert re.search(r"^2 passed, \d+ deselected", out, re.M), out[-3000:]


@attrs.frozen(kw_only=True)
class Sample:
    width: int = attrs.field(default=8, validator=[v.instance_of(int), v.gt(0)])
    rate: float = attrs.field(default=0.5, validator=[v.instance_of(float), v.ge(0), v.lt(1)])
    mode: str = attrs.field(default="a", validator=v.in_(("a", "b")))
    flag: bool = attrs.field(default=False, validator=v.instance_of(bool))
    cap: int | None = attrs.field(default=None, validator=v.optional([v.instance_of(int), v.ge(2)]))
    low: int = attrs.field(default=2, validator=[v.instance_of(int), v.ge(1)])

    @low.validator
    def _below_width(self, attribute, value):
        if value > self.width:
            raise ValueError(f"'low' ({value}) must not exceed 'width' ({self.width})")


def test_field_rules_are_read_from_the_validators():
    fields = attrs.fields_dict(Sample)
    assert field_rule(fields["width"]).lower == (0, False) and field_rule(fields["width"]).type is int
    assert field_rule(fields["rate"]).upper == (1, False) and field_rule(fields["mode"]).options == ("a", "b")
    assert field_rule(fields["cap"]).optional and field_rule(fields["cap"]).lower == (2, True)


@given(configs(Sample))
def test_drawn_configs_are_valid_and_no_larger_than_the_defaults(config):
    assert 1 <= config.width <= 8 and 0 <= config.rate < 1 and config.low <= config.width
    assert config.cap is None or config.cap >= 2


def test_invalid_values_are_refused_by_the_fields_name():
    pairs = invalid_values(Sample)
    assert {name for name, _ in pairs} == {"width", "rate", "mode", "flag", "cap", "low"}
    for name, bad in pairs:
        with pytest.raises(ConfigError, match=name):
            cfg.from_dict(Sample, {name: bad})
