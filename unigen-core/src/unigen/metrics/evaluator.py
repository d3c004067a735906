"""The evaluator network: a small CNN trained on the dataset itself, whose features (and class
probabilities, when the data has classes) feed FID, KID, the Inception Score and precision/recall.

Labelled data: the CNN is a classifier. Unlabelled data (a folder without class sub-folders, an
array): the same CNN body is trained self-supervised on the training split (SimCLR; why, and how
good it is, in :mod:`unigen.metrics.contrastive`). It has no class probabilities, so the Inception
Score, which needs classes, reports None with the reason.

Inception-v3 (the network of FID, Heusel et al. 2017) was trained on ImageNet photographs; on 8x8
grayscale digits its features say little, and its weights must be downloaded. So, as is usual for
small datasets (e.g. the LeNet-based FID of MNIST papers), unigen trains a classifier on the
dataset's training split once, caches it, and reports the scores *on these evaluator features*:
they are comparable between models on the same dataset and seed, not with published Inception FIDs.

Network (Conv 3x3 + ReLU, max-pool 2 after each of the first two stages)::

    (B, C, H, W) -> conv w -> pool -> conv 2w -> pool -> conv 2w -> flatten -> Linear 128 -> ReLU = h
    features = h * scale (B, 128),  logits = Linear(h) (B, classes)

(scale: one number making the features' mean square 1 on the training split)

with w = 16 (an epoch of 28x28 images stays cheap on a CPU; 8x8 digits still reach ~97-98%).
Training: Adam, cosine learning rate, max(600 steps, ``epochs`` epochs) at batch 128, with a seeded
generator for the initialisation and the batch order, so the same seed gives the same weights.

Cache: ``$UNIGEN_CACHE/evaluators/<name>-<key>.safetensors`` (default ``~/.cache/unigen``), where
``key`` is a sha256 over the training split's content (the stored bytes of every example, their
dtype and shape, the labels) and the evaluator settings (kind, seed, training length, VERSION): two
folders or arrays under the same name never share an evaluator (the name only makes the file
readable). Written atomically (temporary file, fsync, rename), read with safetensors (no pickle);
the test accuracy and the architecture live in the file's metadata.

A user with other feature weights (a local Inception, say) passes ``--evaluator FILE``: an exported
program (``torch.export.save``, ``FILE.pt2``, exported with a dynamic batch dimension) or a
TorchScript module (``torch.jit.save``, any other suffix); neither loads a Python pickle. The module
maps images (B, C, H, W) in [-1, 1] to features (B, F), or to a tuple (features (B, F), logits
(B, K)) for the Inception Score. Resizing and grey-to-RGB conversion belong inside that module, e.g.
``torch.nn.functional.interpolate(x.repeat(1, 3, 1, 1), size=299, mode="bilinear")`` before an
Inception-v3 whose weights the user has.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.sources import dataset_spec
from ..errors import DataError, UnigenError

VERSION = 3  # bump when the network or its training changes: old cache files are then ignored
FEATURES = 128


def cache_dir() -> Path:
    root = os.environ.get("UNIGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "unigen")
    return Path(root) / "evaluators"


class EvaluatorNet(nn.Module):
    """The small CNN described in the module docstring. ``num_classes = 0``: self-supervised, the
    head is SimCLR's projection MLP (used only in training) and there are no logits."""

    feature_scale: Tensor  # buffer (): the features' unit (see __init__)

    def __init__(self, channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        w = 16
        self.arch = {"channels": channels, "height": height, "width": width, "num_classes": num_classes}
        self.body: nn.Sequential = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, H/4, W/4)
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Flatten(),  # (B, 2w * H/4 * W/4)
            nn.Linear(2 * w * (height // 4) * (width // 4), FEATURES), nn.ReLU(),
        )
        self.head = (nn.Linear(FEATURES, num_classes) if num_classes else
                     nn.Sequential(nn.Linear(FEATURES, FEATURES), nn.ReLU(), nn.Linear(FEATURES, FEATURES // 2)))
        # Features are reported as body(x) * feature_scale, with the scale set after training so that
        # their mean square over the training split is 1: a choice of units that keeps FID and KID
        # readable (unscaled ReLU features of this net reach tens, and KID's cubic kernel cubes them).
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Images (B, C, H, W) in [-1, 1] -> (features (B, 128), logits (B, classes) or None)."""
        f = self.body(x)
        return f * self.feature_scale, (self.head(f) if self.arch["num_classes"] else None)


class Evaluator:
    """Features and class probabilities of images, computed in batches.

    ``accuracy`` is the network's accuracy on the dataset's test split (None for a user's module and
    for the self-supervised evaluator of unlabelled data). ``no_classes`` says why there are no class
    probabilities when there are none.
    """

    def __init__(self, net: nn.Module, name: str, accuracy: float | None, has_logits: bool = True,
                 no_classes: str = "the evaluator has no class probabilities (a features-only module)") -> None:
        # an exported program's module has no train/eval switch: it is already in inference form
        with contextlib.suppress(NotImplementedError, RuntimeError):
            net.eval()
        self.net = net
        self.name = name
        self.accuracy = accuracy
        self.has_logits = has_logits
        self.no_classes = no_classes

    def to(self, device: Any) -> "Evaluator":
        self.net.to(device)
        return self

    @property
    def device(self) -> torch.device:
        for p in self.net.parameters():
            return p.device
        return torch.device("cpu")

    @torch.no_grad()
    def __call__(self, x: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor | None]:
        """(N, C, H, W) -> (features (N, F) float64 on the CPU, probabilities (N, K) or None)."""
        feats, probs = [], []
        for start in range(0, x.shape[0], batch_size):
            f, p = self.batch(x[start : start + batch_size])
            feats.append(f)
            if p is not None:
                probs.append(p)
        f = torch.cat(feats) if feats else torch.empty(0, 0, dtype=torch.float64)
        return f, (torch.cat(probs) if probs else None)

    @torch.no_grad()
    def batch(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """One batch: non-finite pixels are set to 0 and the images clamped to [-1, 1] first."""
        x = torch.nan_to_num(x.float(), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1).to(self.device)
        out = self.net(x)
        if isinstance(out, (tuple, list)):
            f, logits = out[0], (out[1] if len(out) > 1 else None)
        else:
            f, logits = out, None
        p = None if logits is None or not self.has_logits else torch.softmax(logits.double(), 1).cpu()
        return f.flatten(1).double().cpu(), p


# -- training and the cache -----------------------------------------------------------------------
def train_net(train, test, seed: int = 0, epochs: int = 3, batch_size: int = 128, log: Any = None,
              steps: int | None = None) -> tuple[EvaluatorNet, float]:
    """Train the classifier on ``train`` (a unigen Dataset with labels); return it and its test accuracy.
    ``steps``: None for max(600, ``epochs`` epochs)."""
    if train.y is None or train.info.num_classes is None:
        raise DataError(f"dataset {train.info.name!r} has no labels: the evaluator classifier cannot be trained "
                        "(pass --evaluator FILE.pt with your own feature extractor)")
    c, h, w = train.info.shape
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = EvaluatorNet(c, h, w, train.info.num_classes)
    n = len(train)
    per_epoch = max(1, n // batch_size)
    steps = steps or max(600, epochs * per_epoch)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    started = time.perf_counter()
    step = 0
    while step < steps:
        perm = torch.randperm(n, generator=g)
        for i in range(per_epoch):
            if step >= steps:
                break
            idx = perm[i * batch_size : (i + 1) * batch_size]
            _, logits = net(train.floats(idx))
            loss = nn.functional.cross_entropy(logits, train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    net.eval()
    set_feature_scale(net, train)
    accuracy = test_accuracy(net, test)
    if log is not None:
        log(f"evaluator for {train.info.name!r}: {steps} steps in {time.perf_counter() - started:.0f} s, "
            f"test accuracy {accuracy:.4f}")
    return net, accuracy


@torch.no_grad()
def set_feature_scale(net: EvaluatorNet, train, chunk: int = 1000) -> None:
    """Scale the features so that their mean square over the training split is 1."""
    n = len(train)
    mean_square = sum(float(net.body(train.floats(slice(i, i + chunk))).pow(2).sum()) for i in range(0, n, chunk))
    net.feature_scale.fill_((mean_square / (n * FEATURES)) ** -0.5)


@torch.no_grad()
def test_accuracy(net: nn.Module, test, batch_size: int = 1000) -> float:
    correct = 0
    for start in range(0, len(test), batch_size):
        _, logits = net(test.floats(slice(start, start + batch_size)))
        correct += int((logits.argmax(1) == test.y[start : start + batch_size]).sum())
    return correct / len(test)


def _save_atomic(net: EvaluatorNet, accuracy: float | None, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    meta = {"version": str(VERSION), "arch": json.dumps(net.arch), "test_accuracy": repr(accuracy)}
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one, never half


def _load(path: Path) -> tuple[EvaluatorNet, float | None]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        arch = json.loads(meta["arch"])
        net = EvaluatorNet(**arch)
        net.load_state_dict(load_file(str(path)), strict=True)
        return net.eval(), (None if meta["test_accuracy"] == "None" else float(meta["test_accuracy"]))
    except Exception as exc:  # a corrupt or foreign cache file: say which, the caller retrains
        raise UnigenError(f"cannot read cached evaluator {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None


def content_key(train, settings: dict[str, Any], chunk: int = 4096) -> str:
    """sha256 (hex) over a split's content (the stored bytes of every example, dtype, shape, levels,
    labels) and ``settings``: the evaluator cache key. Reads the data once, in chunks."""
    import numpy as np

    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    raw = train.raw
    h.update(repr((tuple(raw.shape), str(getattr(raw, "dtype", "")), train.info.levels)).encode())
    for start in range(0, len(train), chunk):
        part = raw[start : start + chunk]
        h.update(np.ascontiguousarray(part.numpy() if isinstance(part, Tensor) else np.asarray(part)).tobytes())
    if train.y is not None:
        h.update(b"labels" + train.y.numpy().astype("int64").tobytes())
    return h.hexdigest()


NO_CLASSES = "the data has no class labels, so the evaluator is self-supervised and has no class probabilities"


def dataset_evaluator(dataset: str, host: Any, *, seed: int = 0, data_dir: str | None = None,
                      log: Any = None, epochs: int = 3) -> Evaluator:
    """The cached evaluator of ``dataset`` for ``seed``, trained (and cached) on first use."""
    spec = dataset_spec(dataset, host)
    train = spec.load("train", data_dir)
    return data_evaluator(train, lambda: spec.load("test", data_dir), seed=seed, log=log, epochs=epochs)


def data_evaluator(train, test: Any, *, seed: int = 0, log: Any = None, epochs: int = 3,
                   steps: int | None = None) -> Evaluator:
    """The cached evaluator of the training split ``train`` (a classifier when it has labels, else
    self-supervised), trained on first use. ``test``: the test split, or a callable loading it
    (only needed to train a classifier). ``steps``: None for max(600, ``epochs`` epochs)."""
    if not train.info.is_image:
        raise DataError(f"dataset {train.info.name!r} is not images: FID, KID, IS and precision/recall need an image evaluator")
    labelled = train.y is not None and bool(train.info.num_classes)
    steps = steps or max(600, epochs * max(1, len(train) // 128))
    settings = {"version": VERSION, "kind": "classifier" if labelled else "simclr", "seed": seed, "steps": steps}
    key = content_key(train, settings)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in train.info.name)[-40:] or "data"
    path = cache_dir() / f"{slug}-{key[:20]}.safetensors"
    what = f"{train.info.name} CNN (seed {seed})" if labelled else f"{train.info.name} self-supervised CNN (seed {seed})"
    build = (lambda net, acc: Evaluator(net, what, acc)) if labelled else (
        lambda net, acc: Evaluator(net, what, None, has_logits=False, no_classes=NO_CLASSES))
    if path.exists():
        try:
            return build(*_load(path))
        except UnigenError as exc:
            if log is not None:
                log(f"{exc}; training it again")
    if log is not None:
        how = "classifier" if labelled else "self-supervised (SimCLR) evaluator"
        log(f"training the evaluator {how} for {train.info.name!r} (once; cached in {path})")
    with torch.random.fork_rng(devices=[]):
        if labelled:
            test = test() if callable(test) else test
            net, acc = train_net(train, test, seed=seed, steps=steps, log=log)
        else:
            from .contrastive import train_contrastive

            c, h, w = train.info.shape
            torch.manual_seed(seed)
            net, acc = EvaluatorNet(c, h, w, 0), None
            train_contrastive(net, train, seed=seed, steps=steps, log=log)
            set_feature_scale(net, train)
    _save_atomic(net, acc, path)
    return build(net, acc)


def user_evaluator(path: str | Path) -> Evaluator:
    """A user's feature extractor (see the module docstring for its contract): an exported program
    (``torch.export.save``, suffix ``.pt2``) or a TorchScript module (``torch.jit.save``)."""
    import warnings

    path = Path(path)
    if not path.is_file():
        raise UnigenError(f"evaluator file not found: {path}")
    try:
        if path.suffix == ".pt2":
            net = torch.export.load(str(path)).module()
        else:
            with warnings.catch_warnings():  # torch >= 2.9 marks TorchScript deprecated; it still loads
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        what = "an exported program (torch.export.save)" if path.suffix == ".pt2" else "a TorchScript module (torch.jit.save)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnigenError(f"{path} is not {what}: {first}") from None
    return Evaluator(net, f"user module {path.name}", None)


def stderr_log(message: str) -> None:
    print(f"unigen: {message}", file=sys.stderr, flush=True)
