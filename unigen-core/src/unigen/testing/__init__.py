"""The plugin author's test kit, shipped with unigen-core and loaded by pytest as the ``unigen`` plugin.

- :func:`contract_tests` returns a test class running the whole contract on some model ids
  (``TestMAF = contract_tests("maf")`` in a test module), and ``pytest --unigen-contract=maf`` runs it
  without writing a file (:mod:`unigen.testing.plugin`). The checks are in :mod:`unigen.testing.contract`.
- :mod:`unigen.testing.strategies`: hypothesis strategies for configs, read from the attrs validators.
- :func:`example_config`: a model's example config, with the runs it builds on (``needs_runs``) trained
  first (:mod:`unigen.testing.runs`).
- :func:`quick_train` and :func:`untrained`: small real training runs for "it learns" tests.
- :mod:`unigen.testing.baselines`: fitted baselines such a test must beat (:func:`independent_pixels_bits`,
  :func:`mixture_samples`, :func:`frechet_to`).

Names are imported on first use, so that pytest loading the plugin does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "contract_tests": "contract", "Contract": "contract", "Case": "contract",
    "example_config": "runs", "quick_train": "training", "untrained": "training",
    "independent_pixels_bits": "baselines", "mixture_samples": "baselines", "frechet_to": "baselines",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'unigen.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
