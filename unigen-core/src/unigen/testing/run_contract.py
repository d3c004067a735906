"""Collected by ``pytest --unigen-contract=IDS`` (see :mod:`unigen.testing.plugin`); not imported otherwise."""

from __future__ import annotations

import pytest

from unigen.testing.contract import Contract
from unigen.testing.plugin import requested_ids


class TestContract(Contract):
    """The contract on the ids given to --unigen-contract."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model_id" in metafunc.fixturenames:
        metafunc.parametrize("model_id", requested_ids(metafunc.config))
