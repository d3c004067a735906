"""unigen: one interface for every family of generative model.

Plugin authors need :data:`hookimpl`, :class:`GenerativeModel`, :class:`ModelSpec` and the config
helpers; users need :func:`train` (or :func:`build_model`, :func:`load_dataset` and :class:`Trainer`) and
:func:`load_run`.
"""

from . import checkpoint, config, ops
from .api import Run, build_model, load_dataset, load_run, model_config
from .data import Batch, Dataset
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TrainingDiverged,
    UnigenError,
    UnknownId,
    UnsupportedOperation,
)
from .hookspecs import hookimpl
from .model import DataInfo, GenerativeModel, NoConfig, broadcast_t
from .plugins import default_host, get_plugin_manager
from .registry import DatasetSpec, MetricSpec, ModelSpec, SamplerSpec
from .trainer import Callback, Trainer, TrainerConfig, trainer_config
from .training import train

__version__ = "0.1.0"

__all__ = [
    "checkpoint", "config", "ops",
    "Batch", "Callback", "CheckpointError", "ConfigError", "DataError", "DataInfo", "Dataset",
    "DatasetSpec", "GenerativeModel", "MetricSpec", "ModelSpec", "NoConfig", "Run", "SamplerSpec",
    "Trainer", "TrainerConfig", "TrainingDiverged", "UnigenError", "UnknownId", "UnsupportedOperation",
    "broadcast_t", "build_model", "default_host", "get_plugin_manager", "hookimpl", "load_dataset",
    "load_run", "model_config", "train", "trainer_config",
]
