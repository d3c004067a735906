"""The model contract every family implements.

Time convention, shared by every continuous-time model (flows, diffusion, interpolants): **t=0 is
data and t=1 is noise**, as in the diffusion literature; samplers integrate from t=1 to t=0.
(torchcfm puts noise at t=0 and diffusers at sigma=1: convert at the boundary, never mix.)

Likelihoods are per example and in nats; bits/dim is derived once, in :mod:`unigen.metrics.nll`.
Images are float tensors in [-1, 1] of shape (B, C, H, W); vectors come as they are.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn

import attrs
import torch
from torch import Tensor, nn

from .errors import UnsupportedOperation

PARADIGMS = ("likelihood", "implicit", "score", "flow", "world")
LOGPROB_KINDS = ("exact", "bound", "estimate", "unnormalized", "none")
DATA_KINDS = ("image", "vector", "text-image")


@attrs.frozen(kw_only=True)
class DataInfo:
    """What a model needs to know about its data to build itself."""

    name: str
    shape: tuple[int, ...]  # one example: (C, H, W) for images, (D,) for vectors
    kind: str = "image"  # image | vector
    levels: int | None = None  # K quantization levels of the discrete data (None: continuous)
    num_classes: int | None = None
    vocab_size: int | None = None  # text tokens, for multimodal data
    text_len: int | None = None

    @property
    def dim(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def kinds(self) -> tuple[str, ...]:
        """The ``data_kinds`` this data satisfies: captioned images (``vocab_size`` set) are images too."""
        return (self.kind, "text-image") if self.kind == "image" and self.vocab_size is not None else (self.kind,)

    @property
    def is_image(self) -> bool:
        return self.kind == "image" and len(self.shape) == 3


@attrs.frozen(kw_only=True)
class NoConfig:
    """The config of a model without hyperparameters."""


class GenerativeModel(nn.Module):
    """Base class: a ``torch.nn.Module`` answering five operations.

    Subclasses set the class attributes and override what they support; an operation a model cannot
    do raises :class:`unigen.UnsupportedOperation` with the reason. Callers in the core never call
    these methods directly: they go through the hooks (:mod:`unigen.ops`) so plugins can override or
    wrap them.

    Class attributes:
      ``family``       e.g. "vae"; ``paradigm`` one of :data:`PARADIGMS`;
      ``logprob_kind`` one of :data:`LOGPROB_KINDS`: the class's default; an instance whose config
                   changes it sets ``self.logprob_kind`` in ``__init__`` (readers ask the instance);
      ``logprob_variants`` the other kinds a config can give, each with the config values that select it;
      ``Config``       the frozen attrs config class;
      ``default_steps`` the default number of sampling steps (None: one network call);
      ``logprob_discrete`` whether ``logprob`` is a pmf over the K levels or a density.
    """

    family: ClassVar[str] = ""
    paradigm: ClassVar[str] = "likelihood"
    logprob_kind: str = "none"  # the class default; an instance may set its own (see above)
    Config: ClassVar[type] = NoConfig
    default_steps: ClassVar[int | None] = None
    # True when logprob is log P of the discrete levels (a pmf, e.g. PixelCNN's softmax or a
    # discretized decoder); False when it is a density on the [-1, 1] data space, which the NLL
    # metric evaluates on uniformly dequantized data.
    logprob_discrete: ClassVar[bool] = False
    # Kind -> config values that make an instance report that kind, when the kind depends on the config
    # (a flow's {"exact": {"trace": "exact"}, "estimate": {"trace": "hutchinson"}}). Declaring an
    # "estimate" beside an "exact" claims the estimate is unbiased for the exact value; a "bound" beside
    # an "estimate"/"exact" claims it never exceeds it. The contract kit checks both claims.
    logprob_variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    # True when ``forward(x)`` (t=None) is a bijection onto N(0, I) noise of the data's shape, so that
    # logprob(x) = log N(forward(x); 0, I) + log|det d forward / dx| and reverse(forward(x)) = x.
    bijective: ClassVar[bool] = False
    # Which kinds of data the model accepts ("image", "vector", "text-image").
    data_kinds: ClassVar[tuple[str, ...]] = ("image", "vector")
    # Trainer settings this model prefers (e.g. a GAN's lr and betas); the user's flags win.
    trainer_defaults: ClassVar[dict[str, Any]] = {}
    # Why logprob is unavailable, used in UnsupportedOperation and in `unigen eval`.
    no_logprob_reason: ClassVar[str] = "this model defines no likelihood"
    # The metric ids `unigen eval` computes when --metrics is not given (e.g. a JEPA's linear probe).
    default_metrics: ClassVar[tuple[str, ...]] = ("nll",)
    # The trained runs this model builds on: config field -> model id (an LDM: {"autoencoder": "vae"}).
    # The test kit trains a tiny one of each for the example config (unigen.testing.example_config).
    needs_runs: ClassVar[Mapping[str, str]] = {}
    # The settings the method's recipe gives a run it builds on: config field -> {setting: value} (an LDM's
    # autoencoder: {"autoencoder": {"beta": 1e-6}}, Rombach et al.'s KL weight). The defaults test
    # (unigen.testing.defaults) trains the helper run with them; the model's docs tell users to.
    needs_settings: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a class whose declared capabilities are not among the known values, when it is defined."""
        super().__init_subclass__(**kwargs)
        _check_choice(cls, "paradigm", cls.paradigm, PARADIGMS)
        _check_choice(cls, "logprob_kind", cls.logprob_kind, LOGPROB_KINDS)
        for kind in cls.logprob_variants:
            _check_choice(cls, "logprob_variants key", kind, LOGPROB_KINDS)
        if isinstance(cls.data_kinds, str) or not cls.data_kinds:
            raise TypeError(f"{cls.__qualname__}.data_kinds must be a non-empty tuple of {DATA_KINDS}")
        for kind in cls.data_kinds:
            _check_choice(cls, "data_kinds entry", kind, DATA_KINDS)
        if not set(cls.needs_settings) <= set(cls.needs_runs):
            raise TypeError(f"{cls.__qualname__}.needs_settings names runs that needs_runs does not: "
                            f"{sorted(set(cls.needs_settings) - set(cls.needs_runs))}")
        for name in ("logprob_discrete", "bijective"):
            if not isinstance(getattr(cls, name), bool):
                raise TypeError(f"{cls.__qualname__}.{name} must be True or False, got {getattr(cls, name)!r}")

    @classmethod
    def logprob_kinds(cls) -> tuple[str, ...]:
        """Every kind an instance may report: the default first, then the config-selected variants."""
        return (cls.logprob_kind, *(k for k in cls.logprob_variants if k != cls.logprob_kind))

    def __init__(self, config: Any, data: DataInfo) -> None:
        super().__init__()
        self.config = config
        self.data = data
        self.model_id: str = type(self).__name__.lower()

    @property
    def host(self) -> Any:
        """The plugin host this model was built with (:func:`unigen.build_model` sets it), or None.
        The core calls the operations through it, and a model looks its samplers up in it
        (``get_sampler(name, host=self.host)``). Held weakly, so copies of the model share it."""
        ref = self.__dict__.get("_host_ref")
        return ref() if ref is not None else None

    @host.setter
    def host(self, value: Any) -> None:
        self.__dict__["_host_ref"] = weakref.ref(value) if value is not None else None

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> Any:
        """A small, fast config for the shared contract tests. A model that builds on another run (a
        teacher, an autoencoder) declares it in :attr:`needs_runs`; the test kit
        (:func:`unigen.testing.example_config`) trains a tiny one in ``workdir/<field>`` first, and this
        method points its config field there."""
        return cls.Config()

    # -- the five operations -----------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Any:
        """Data -> noise/latent."""
        self.unsupported("forward", "it has no forward (encoding) process")

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Noise/latent -> data."""
        self.unsupported("reverse", "it has no reverse (decoding) process")

    def loss(self, batch: Any, group: str | None = None) -> Tensor | Mapping[str, Tensor]:
        """Training objective: a scalar, or one scalar per parameter group."""
        self.unsupported("loss", "it defines no training objective")

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        """Draw new examples, shape (num_samples, *data.shape)."""
        self.unsupported("sample", "it is not a sampler")

    def logprob(self, x: Tensor) -> Tensor:
        """log p(x) in nats per example, shape (B,)."""
        self.unsupported("logprob", self.no_logprob_reason)

    # -- what the trainer asks ----------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups, one optimizer each. Order is the order they are stepped."""
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    def optimizer_settings(self, group: str) -> dict[str, Any]:
        """Per-group overrides of the trainer's optimizer settings (``lr``, ``betas``, ``optimizer``)."""
        return {}

    def active_groups(self, step: int) -> tuple[str, ...]:
        """The groups stepped at trainer step ``step`` (e.g. n_critic critic steps per generator step)."""
        return tuple(self.parameter_groups())

    def on_train_start(self, total_steps: int, step: int) -> None:
        """Told by the trainer before its loop (again after a resume): the run's length and the step
        it starts from, for schedules over the whole run (e.g. I-JEPA's momentum ramp)."""

    def after_step(self, group: str, step: int) -> None:
        """Work after an optimizer step of ``group``: EMA targets, weight clipping, schedules."""

    def ema_buffers(self) -> set[str]:
        """State-dict names of the buffers the trainer's EMA averages like parameters.

        Every other buffer is copied as it is (a statistic set once, such as LDM's latent scale, or
        a replay buffer, must not be pulled towards its initial value). By default: BatchNorm's
        running mean and variance, which describe the activations of the weights being averaged.
        """
        return {f"{name}.{stat}" if name else stat for name, m in self.named_modules() if isinstance(m, _BATCHNORMS)
                and m.track_running_stats for stat in ("running_mean", "running_var")}

    def latent(self, x: Tensor) -> Tensor:
        """A deterministic latent code per example, shape (B, d), for latent-space pictures."""
        self.unsupported("latent", "it has no latent space")

    # -- helpers ------------------------------------------------------------------------------
    def unsupported(self, op: str, reason: str) -> NoReturn:
        raise UnsupportedOperation(f"{self.model_id} does not support {op}: {reason}")

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the parameters (float64 after ``.double()``): what new tensors use."""
        for t in self.parameters():
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()


def _check_choice(cls: type, what: str, value: Any, known: tuple[str, ...]) -> None:
    if value not in known:
        raise TypeError(f"{cls.__qualname__}: {what} {value!r} is not one of {', '.join(known)}")


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def broadcast_t(t: Tensor, x: Tensor) -> Tensor:
    """Reshape t of shape (B,) to (B, 1, ..., 1) to broadcast against x of shape (B, *D)."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))
