"""The pytest plugin (entry point ``pytest11: unigen``): ``pytest --unigen-contract=IDS``.

``--unigen-contract=maf,flow`` (or ``all``: every installed id) adds the contract of those model ids
to the collected tests, so a third party runs it from its own repository with only unigen-core and its
plugin installed. The contract itself is :class:`unigen.testing.contract.Contract`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("run_contract.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("unigen", "unigen model contract")
    group.addoption("--unigen-contract", metavar="IDS", default=None,
                    help="run the unigen model contract on these comma-separated model ids ('all': every "
                         "installed id)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unigen_contract: a check of the unigen model contract")
    if config.getoption("unigen_contract") and str(RUNNER) not in config.args:  # xdist workers too
        config.args.append(str(RUNNER))


def requested_ids(config: pytest.Config) -> list[str]:
    """The ids named by --unigen-contract, 'all' expanded to every installed id."""
    value = config.getoption("unigen_contract") or ""
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if ids == ["all"]:
        import unigen

        return list(unigen.default_host().models)
    return ids
