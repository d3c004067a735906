"""unigen: one interface for every family of generative model.

This module is the user tier: :func:`train` (or :func:`build_model`, :func:`load_dataset` and
:class:`Trainer`), :func:`load_run`, the five operations (:mod:`unigen.ops`) and the metrics
(:mod:`unigen.metrics`). Plugin authors import from :mod:`unigen.plugin` (hooks, the model contract,
config fields, building blocks).
"""

__version__ = "0.2.0"  # set before the imports below: unigen.scaffold reads it
from . import checkpoint, config, images, malloc, metrics, ops, progress, testing
from .api import Run, build_model, load_dataset, load_run, model_config
from .data import Dataset
from .data.sources import check_data_dir, dataset_spec
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TrainingDiverged,
    UnigenError,
    UnknownId,
    UnsupportedOperation,
)
from .model import DataInfo
from .plugins import default_host, get_plugin_manager
from .trainer import Callback, Trainer, TrainerConfig, trainer_config
from .training import train

__all__ = [
    "checkpoint", "config", "images", "malloc", "metrics", "ops", "progress", "testing",
    "Callback", "CheckpointError", "ConfigError", "DataError", "DataInfo", "Dataset", "Run", "Trainer",
    "TrainerConfig", "TrainingDiverged", "UnigenError", "UnknownId", "UnsupportedOperation",
    "build_model", "check_data_dir", "dataset_spec", "default_host", "get_plugin_manager", "load_dataset",
    "load_run", "model_config", "train", "trainer_config",
]


def __getattr__(name: str):  # the author names, still reachable as unigen.X for older code
    import importlib

    plugin = importlib.import_module("unigen.plugin")
    if name in plugin.__all__:
        return getattr(plugin, name)
    raise AttributeError(f"module 'unigen' has no attribute {name!r}")
