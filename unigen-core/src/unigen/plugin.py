"""The author tier: everything a plugin needs, in one place. A plugin imports from ``unigen.plugin``
(and the user tier, ``unigen``) and from nowhere else in unigen.

- hooks and specs: :data:`hookimpl`, :class:`ModelSpec`, :class:`DatasetSpec`, :class:`SamplerSpec`,
  :class:`MetricSpec`, :class:`LoggerSpec` (with :class:`Logger`, the base of a training logger);
- the model contract: :class:`GenerativeModel`, :class:`DataInfo`, :class:`NoConfig`,
  :func:`broadcast_t`, :class:`Batch`, :class:`Dataset`, :func:`to_levels`, :func:`from_levels`;
- config fields: :func:`positive_int`, :func:`probability`, :func:`sampler`, ... (:mod:`unigen.fields`);
- samplers: :func:`get_sampler`, :func:`registered_sampler`, :func:`track_steps` (wrap a sampling
  loop's steps: a progress bar under ``unigen sample`` on a terminal);
- likelihood helpers: :func:`dequantize`, :func:`bin_width`; kernels: :func:`rbf_kernel`, :func:`mmd2`;
- building blocks: :class:`MLP`, :class:`ConvEncoder`, :class:`ConvDecoder`, :class:`UNet`,
  :class:`TimeEmbedding`, :class:`TransformerBlock`, :func:`sinusoidal_embedding`, :func:`spatial_sizes`,
  :func:`level_channels`, :func:`resolution_levels`, :func:`unet_mults` (architectures sized by the data's resolution);
- data helpers: :func:`sample_toy` (the 2-D toys), :data:`text` (the caption tokenizer);
- runs another model builds on: :func:`read_run`, :func:`provider_of`; errors;
- the test kit: :mod:`unigen.testing` (``quick_train``, ``untrained``, ``example_config``).
"""

from __future__ import annotations

from . import testing
from .checkpoint import read_run
from .data import Batch, Dataset, from_levels, to_levels
from .data import text as text
from .data.toy import N as TOY_SIZES
from .data.toy import sample_toy
from .errors import CheckpointError, ConfigError, DataError, UnigenError, UnknownId, UnsupportedOperation
from .fields import (
    flag,
    fraction,
    int_at_least,
    nonnegative_float,
    nonnegative_int,
    one_of,
    open_unit,
    positive_float,
    positive_int,
    positive_ints,
    probability,
    registered_sampler,
    sampler,
    text_field,
)
from .hookspecs import hookimpl
from .loggers import Logger
from .metrics.mmd import SCALES as MMD_SCALES
from .metrics.mmd import mmd2, rbf_kernel
from .metrics.nll import bin_width, dequantize
from .model import DataInfo, GenerativeModel, NoConfig, broadcast_t
from .nn import MLP, ConvDecoder, ConvEncoder, TimeEmbedding, TransformerBlock, UNet, sinusoidal_embedding
from .nn.blocks import level_channels, resolution_levels, spatial_sizes, unet_mults
from .plugins import get_sampler
from .progress import track as track_steps
from .registry import DatasetSpec, LoggerSpec, MetricSpec, ModelSpec, SamplerSpec, provider_of

__all__ = [
    # hooks and specs
    "track_steps", "hookimpl", "DatasetSpec", "LoggerSpec", "MetricSpec", "ModelSpec", "SamplerSpec", "Logger",
    # the model contract
    "Batch", "DataInfo", "Dataset", "GenerativeModel", "NoConfig", "broadcast_t", "from_levels", "to_levels",
    # config fields
    "flag", "fraction", "int_at_least", "nonnegative_float", "nonnegative_int", "one_of", "open_unit",
    "positive_float", "positive_int", "positive_ints", "probability", "sampler", "text_field",
    # samplers, likelihoods, kernels
    "get_sampler", "registered_sampler", "bin_width", "dequantize", "MMD_SCALES", "mmd2", "rbf_kernel",
    # building blocks
    "MLP", "ConvDecoder", "ConvEncoder", "TimeEmbedding", "TransformerBlock", "UNet", "sinusoidal_embedding",
    "spatial_sizes", "level_channels", "resolution_levels", "unet_mults",
    # data helpers, runs, errors
    "TOY_SIZES", "sample_toy", "text", "read_run", "provider_of", "testing",
    "CheckpointError", "ConfigError", "DataError", "UnigenError", "UnknownId", "UnsupportedOperation",
]
