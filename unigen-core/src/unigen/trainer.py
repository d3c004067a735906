"""The generic trainer. It knows nothing of families or model ids.

What varies between models is asked of the model through the contract:
``parameter_groups()`` (one optimizer each, stepped in order), ``optimizer_settings(group)``,
``active_groups(step)`` (e.g. n_critic critic steps per generator step), ``on_train_start(total_steps,
step)`` (the run's length, before the loop and after a resume), the loss through the
``unigen_loss`` hook with the group about to be stepped, and ``after_step(group, step)`` (EMA targets,
weight clipping). The EMA (``ema_decay`` > 0) averages the parameters and the buffers a model names in
``ema_buffers()`` (BatchNorm statistics by default) and copies every other buffer. Its decay warms up,
d_t = min(ema_decay, (1 + t) / (10 + t)) after t steps (diffusers' EMAModel; the mean teacher of Tarvainen
& Valpola 2017 warms up alike), so a short run's EMA is not held at the untrained weights (0.995^300 = 22%
of them after 300 steps without it).

Per step the loop does no host synchronisation and as little Python as it can: each loss is kept
(detached) on the device and the losses of an interval are stacked, summed and checked for NaN/inf
once per ``log_every`` steps and before every checkpoint, so a NaN never reaches a checkpoint and the
last good one stays intact. What does not change during a run is resolved before the loop: the
loss hook (called straight through the model when the core's default is its only implementation),
the group schedule of a model that does not override ``active_groups``, and a constant learning
rate (its scheduler is not stepped; its state is brought up to date when saved).

``grad_accum`` = K: each step reads K batches and every group stepped accumulates the gradient of
(1/K) sum_k L_k over them (one batch of K*B for a mean loss). ``precision`` bf16/fp16 runs the loss
under ``torch.autocast`` (fp16 with a ``GradScaler`` per group); a model keeps a delicate part
(a log-det sum, an ODE solve) in fp32 inside ``with torch.autocast(x.device.type, enabled=False):``.
"""

from __future__ import annotations

import functools
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import builtin
from . import checkpoint as ck
from .callbacks import Callback
from .data import Batch, BatchIterator, Dataset
from .errors import CheckpointError, ConfigError, TrainingDiverged
from .interrupt import SignalStop
from .loggers import JsonlLogger
from .model import GenerativeModel
from .plugins import Host, default_host
from .reduce import BucketedReducer
from .trainer_settings import (  # noqa: F401  (re-exported: unigen.trainer.TrainerConfig, ...)
    AUTOCAST_DTYPES,
    DEVICE_RE,
    LR_SCHEDULES,
    OPTIMIZERS,
    RESUMABLE,
    TrainerConfig,
    resolve_device,
    trainer_config,
)

# torch.compile's backend for ``compile=True`` ("aot_eager" traces the same graphs without generating code).
COMPILE_BACKEND = "inductor"
# Size of the gradient buckets all-reduced during the backward pass across ranks (DDP's default).
BUCKET_MB = 25.0


def _networks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The child modules with trainable parameters and a forward of their own; a container without
    one (a ModuleList or ModuleDict) is looked into."""
    nets: list[torch.nn.Module] = []
    for child in module.children():
        if type(child).forward is torch.nn.Module.forward:
            nets += _networks(child)
        elif any(p.requires_grad for p in child.parameters()):
            nets.append(child)
    return nets


class Trainer:
    """Train ``model`` on ``data``; write into ``run_dir`` when given (``run.json``, the metrics and
    the checkpoints: the same run directory as ``unigen train``). ``config``: a
    :class:`TrainerConfig` or a mapping of settings, over the model's ``trainer_defaults``
    (:func:`trainer_config`)."""

    def __init__(
        self, model: GenerativeModel, data: Dataset, config: TrainerConfig | Mapping[str, Any] | None = None, *,
        run_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (), quiet: bool = False, host: Host | None = None,
        dataset_name: str | None = None, data_dir: str | None = None, rank: int = 0, world_size: int = 1,
    ) -> None:
        self.config = config = trainer_config(model, config)
        self.host = host or model.host or default_host()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":  # TF32 takes effect on Ampere and later
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = config.tf32
        self.model = model.to(self.device)
        self._channels_last = config.channels_last and len(data.info.shape) == 3
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted at run time; missing from torch's stubs
        self.data = data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        if self.run_dir is not None and rank == 0:  # metrics.jsonl: always on, once
            if not any(isinstance(cb, JsonlLogger) for cb in self.callbacks):
                self.callbacks.insert(0, JsonlLogger(self.run_dir))
        self.quiet = quiet
        self.dataset_name = dataset_name or data.info.name
        self.data_dir = data_dir
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.step = 0
        self.groups = model.parameter_groups()
        if not self.groups:
            raise ConfigError(f"{model.model_id} has no trainable parameters")
        self.optimizers = {name: self._optimizer(name, params) for name, params in self.groups.items()}
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: LR_SCHEDULES[config.lr_schedule](s, config.steps, config.warmup_steps)
            )
            for name, opt in self.optimizers.items()
        }
        self.ema: list[Tensor] | None = None
        if config.ema_decay > 0:
            self.ema = [t.detach().clone() for t in self.model.state_dict().values()]
        self.batches = BatchIterator(data, config.batch_size, seed=config.seed, rank=rank, world_size=world_size,
                                     device=self.device, flip=config.flip)
        self._loss_hook = self._resolve_loss_hook()  # resolved once, not per step
        # Gradients are averaged over ranks while the backward pass runs (the group being stepped only).
        self.reducer = BucketedReducer(self.groups, world_size, BUCKET_MB) if world_size > 1 else None
        self._amp_dtype = AUTOCAST_DTYPES[config.precision]
        # fp16 gradients underflow without loss scaling: one scaler per group (each its own optimizer).
        self.scalers = {name: torch.amp.GradScaler(self.device.type) for name in self.groups} \
            if config.precision == "fp16" else {}
        self.last_record: dict[str, Any] = {}

    # -- construction -------------------------------------------------------------------------
    def _optimizer(self, group: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        c = self.config
        settings: dict[str, Any] = {"optimizer": c.optimizer, "lr": c.lr, "betas": c.betas, "weight_decay": c.weight_decay}
        settings.update(self.model.optimizer_settings(group))
        name = settings.pop("optimizer")
        if name not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
        if name not in ("adam", "adamw"):
            settings.pop("betas")
        return OPTIMIZERS[name](params, **settings)

    def _resolve_loss_hook(self) -> Callable[..., Any]:
        """The ``unigen_loss`` hook, or the model's own ``loss`` when the core's default (which calls
        exactly that) is the hook's only implementation: the same result without pluggy's dispatch."""
        hook = self.host.pm.hook.unigen_loss
        impls = hook.get_hookimpls()
        if len(impls) == 1 and impls[0].plugin is builtin and not impls[0].hookwrapper and not impls[0].wrapper:
            loss = self.model.loss
            return lambda model, batch, group: loss(batch, group)
        return functools.partial(self.host.call, "unigen_loss")

    def _constant_lr(self) -> bool:
        return self.config.lr_schedule == "constant" and self.config.warmup_steps == 0

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        if self._constant_lr():  # not stepped in the loop (the factor is 1): record the steps taken
            for s in self.schedulers.values():
                s.last_epoch, s._step_count = self.step, self.step + 1
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": rng,
            "data": self.batches.state_dict(),
            **({"scalers": {k: sc.state_dict() for k, sc in self.scalers.items()}} if self.scalers else {}),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        try:
            self.step = int(state["step"])
            for k, o in self.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
            for k, s in self.schedulers.items():
                s.load_state_dict(state["schedulers"][k])
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            self.batches.load_state_dict(state["data"])
            for k, sc in self.scalers.items():
                sc.load_state_dict(state["scalers"][k])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"trainer state does not match this model/trainer: {exc}") from None

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step, after checking that every weight is finite: the
        update after the last checked loss is otherwise unchecked, and a NaN/inf checkpoint would
        replace the last good one."""
        if self.run_dir is None or not self.is_main:
            return None
        names = list(self.model.state_dict())
        tensors = ck.state_dict_for_save(self.model)
        ema = None
        if self.ema is not None:
            ema = {n: t.detach().cpu().contiguous().clone() for n, t in zip(names, self.ema)}
        self._check_weights({**tensors, **{f"ema {k}": t for k, t in (ema or {}).items()}})
        path = ck.write_checkpoint(self.run_dir, self.step, tensors, ema, self.state(),
                                   keep=self.config.keep_checkpoints)
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)
        return path

    def _check_weights(self, tensors: Mapping[str, Tensor]) -> None:
        bad = ck.first_non_finite(dict(tensors))
        if bad is not None:
            last = ck.latest_checkpoint(self.run_dir) if self.run_dir is not None else None
            keep = f"; last good checkpoint: {last}" if last else ""
            raise TrainingDiverged(
                f"{self.model.model_id}: weights became NaN/inf by step {self.step} (in {bad!r}); not "
                f"saved, stopped{keep}. Lower the learning rate or check the settings"
            )

    def resume(self) -> bool:
        """Load the newest checkpoint of ``run_dir``; False when there is none."""
        if self.run_dir is None:
            return False
        path = ck.latest_checkpoint(self.run_dir)
        if path is None:
            return False
        ck.load_into(self.model, ck.load_weights(path / "model.safetensors"), path / "model.safetensors")
        if self.ema is not None:
            if not (path / "ema.safetensors").exists():
                raise CheckpointError(f"{path} has no EMA weights but ema_decay > 0")
            tensors = ck.load_weights(path / "ema.safetensors")
            self.ema = [tensors[n].to(self.device) for n in self.model.state_dict()]
        self.load_state(ck.load_state(path / "state.pt"))
        if self.step != ck.checkpoint_step(path):
            raise CheckpointError(f"{path / 'state.pt'} says step {self.step}, but it is in {path.name}: "
                                  f"the checkpoint was altered")
        if self.is_main:  # what was logged after this checkpoint is logged again: drop it, never twice
            ck.truncate_metrics(self.run_dir, self.step)
        return True

    def run_record(self) -> dict[str, Any]:
        """What ``run.json`` holds for this run (:func:`unigen.checkpoint.run_record`)."""
        spec = self.host.models[self.model.model_id] if self.model.model_id in self.host.models else None
        return ck.run_record(self.model, self.data.info, self.config, dataset=self.dataset_name,
                             data_dir=self.data_dir, plugin=spec.plugin if spec else "")

    # -- the loop -------------------------------------------------------------------------------
    def _log(self, means: dict[str, Tensor], started: float, steps_done: int) -> dict[str, Any]:
        record: dict[str, Any] = {"step": self.step}
        for name, mean in means.items():
            record[f"loss/{name}"] = float(mean)
        record["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        record["steps_per_sec"] = steps_done / max(time.perf_counter() - started, 1e-9)
        for name, norm in self._grad_norms.items():
            record[f"grad_norm/{name}"] = float(norm)
        self.last_record = record
        for cb in self.callbacks:
            cb.on_log(self, record)
        if self._plain:
            print(self._line(record), file=sys.stderr, flush=True)
        return record

    def _line(self, record: Mapping[str, Any]) -> str:
        """The plain progress line off a terminal: step, losses, steps/s, ETA."""
        rate = record["steps_per_sec"]
        left = int((self.config.steps - self.step) / max(rate, 1e-9))
        losses = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k.startswith("loss/"))
        eta = f"{left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}"
        return f"step {self.step}/{self.config.steps} {losses} {rate:.3g} steps/s ETA {eta}"

    def log_image(self, name: str, image: Any) -> None:
        """Send a picture (uint8, (H, W) or (H, W, 3)) to every callback's ``on_image`` (the loggers)."""
        for cb in self.callbacks:
            cb.on_image(self, name, image)

    def _check_finite(self, losses: Mapping[str, list[Tensor]], steps: Mapping[str, list[int]]) -> dict[str, Tensor]:
        """Stack the losses of the interval per group, raise on the first non-finite one, return each
        group's mean over the steps *that group* took (a generator stepped every n_critic-th step is
        averaged over its own steps). One host sync per interval."""
        means, first, bad_group = {}, -1, "?"
        for group, values in losses.items():
            if not values:
                continue
            stacked = torch.stack(values)
            means[group] = stacked.mean()
            bad = (~torch.isfinite(stacked.reshape(len(values), -1)).all(1)).nonzero()
            if bad.numel():
                step = steps[group][int(bad[0])]
                if first < 0 or step < first:
                    first, bad_group = step, group
        if first >= 0:
            last = ck.latest_checkpoint(self.run_dir) if self.run_dir is not None else None
            keep = f"; last good checkpoint: {last}" if last else ""
            raise TrainingDiverged(
                f"{self.model.model_id}: loss became NaN/inf at step {first} (group "
                f"{bad_group}); stopped{keep}. Lower the learning rate or check the data"
            )
        return means

    def fit(self) -> dict[str, Any]:
        """Run until ``config.steps``; return the last log record."""
        c = self.config
        if self.run_dir is not None and self.is_main:
            ck.write_run(self.run_dir, self.run_record())
        model = self.model
        model.train()
        group_names = list(self.groups)
        single = len(group_names) == 1
        params = {k: list(p) for k, p in self.groups.items()}
        # A model that keeps the base class's active_groups steps every group at every step.
        every_step = tuple(group_names) if type(model).active_groups is GenerativeModel.active_groups else None
        step_lr = not self._constant_lr()
        accum = c.grad_accum
        losses: dict[str, list[Tensor]] = {g: [] for g in group_names}  # this interval's losses, on the device
        loss_steps: dict[str, list[int]] = {g: [] for g in group_names}
        bar = self._progress()
        self._plain = bar is None and not self.quiet and self.is_main  # off a terminal: a line per log
        self._grad_norms: dict[str, Tensor] = {}
        started, steps_done = time.perf_counter(), 0
        ema_avg, ema_copy = self._ema_pairs()
        minutes = 60 * c.checkpoint_minutes if c.checkpoint_minutes and self.run_dir is not None else math.inf
        next_time = time.monotonic() + minutes
        # One process stops on a signal by itself; under torchrun the ranks could stop at different steps
        # (one waiting in an all-reduce for another that has left), so the launcher's handling stays.
        stop = SignalStop() if self.run_dir is not None and self.world_size == 1 else SignalStop(())
        model.on_train_start(c.steps, self.step)
        if c.compile:
            self._compile(group_names, params, single)
        for cb in self.callbacks:
            cb.on_train_start(self)
        with stop:
            while self.step < c.steps:
                micro = [self._next_batch() for _ in range(accum)]  # K batches per step, in data order
                log_next = (self.step + 1) % c.log_every == 0 or self.step + 1 == c.steps
                for group in every_step or model.active_groups(self.step):
                    opt = self.optimizers[group]
                    opt.zero_grad(set_to_none=True)
                    loss = self._backward(micro, group, None if single else params[group], reduce=True)
                    if self.reducer is not None:  # wait for the reduction that overlapped the backward pass
                        self.reducer.finish()
                    if self.scalers:  # true gradients for the norm and the clipping
                        self.scalers[group].unscale_(opt)
                    if log_next:  # the gradient norm of the logged step (no sync until it is logged)
                        self._grad_norms[group] = torch.nn.utils.get_total_norm(
                            [p.grad for p in params[group] if p.grad is not None])
                    if c.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params[group], c.grad_clip)
                    if self.scalers:  # skips the step when a gradient is inf/NaN, then adapts the scale
                        self.scalers[group].step(opt)
                        self.scalers[group].update()
                    else:
                        opt.step()
                    if step_lr:
                        self.schedulers[group].step()
                    model.after_step(group, self.step)
                    losses[group].append(loss)
                    loss_steps[group].append(self.step)
                if self.ema is not None:
                    with torch.no_grad():
                        if ema_avg:
                            decay = min(c.ema_decay, (1 + self.step) / (10 + self.step))
                            torch.optim.swa_utils.get_ema_multi_avg_fn(decay)(
                                [e for e, _ in ema_avg], [p for _, p in ema_avg], None)
                        for e, p in ema_copy:
                            e.copy_(p)
                self.step += 1
                steps_done += 1
                for cb in self.callbacks:
                    cb.on_step_end(self, self.step)
                signalled = stop.signum is not None  # read once: a signal may arrive at any moment
                at_log = self.step % c.log_every == 0 or self.step == c.steps
                at_ckpt = ((c.checkpoint_every and self.step % c.checkpoint_every == 0) or signalled
                           or (minutes < math.inf and time.monotonic() >= next_time))
                if at_log or at_ckpt:
                    means = self._check_finite(losses, loss_steps)
                if at_log:
                    record = self._log(means, started, steps_done)
                    for g in group_names:
                        losses[g].clear()
                        loss_steps[g].clear()
                    if bar is not None:
                        bar.set_postfix({k.split("/")[-1]: f"{val:.4g}" for k, val in record.items() if k.startswith("loss/")})
                if bar is not None:
                    bar.update(1)
                if at_ckpt:
                    self.save_checkpoint()
                    next_time = time.monotonic() + minutes
                if signalled:
                    break
        if bar is not None:
            bar.close()
        if self.run_dir is not None:
            latest = ck.latest_checkpoint(self.run_dir)
            if latest is None or latest.name != f"step_{self.step:08d}":
                self.save_checkpoint()
        else:  # no checkpoint checks them: a diverged run must not end as if it had trained
            self._check_weights(self.model.state_dict())
        for cb in self.callbacks:
            cb.on_train_end(self)
        model.eval()
        if stop.signum is not None:
            raise stop.interrupted(self)
        return self.last_record

    def _compile(self, group_names: list[str], params: Mapping[str, list[torch.nn.Parameter]], single: bool) -> None:
        """Compile the forward of each network of the model (:func:`_networks`; the state dict keeps
        its names), then run one trial forward/backward of every group of the first
        step to compile it. A model that cannot be compiled (a double backward through the graph, as
        a CNF's divergence or WGAN-GP's penalty take) trains eagerly after one warning. The trial
        leaves no trace: the random state, the data order, the buffers and the gradients are restored."""
        nets = _networks(self.model)
        for m in nets:
            m.forward = torch.compile(m.forward, backend=COMPILE_BACKEND)  # an instance attribute: del undoes it
        rng, data = torch.get_rng_state(), self.batches.state_dict()
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        buffers = [b.detach().clone() for b in self.model.buffers()]
        try:
            micro = [self._next_batch() for _ in range(self.config.grad_accum)]
            for group in self.model.active_groups(self.step) if not single else group_names:
                self._backward(micro, group, None if single else params[group])
        except Exception as exc:  # noqa: BLE001 - any failure to compile: train eagerly
            for m in nets:
                del m.forward
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"--compile: {self.model.model_id} cannot be compiled ({type(exc).__name__}: {first}); "
                          f"training without compiling", stacklevel=3)
        finally:
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            self.batches.load_state_dict(data)
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers):
                    b.copy_(saved)
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)

    def _next_batch(self) -> Any:
        batch = next(self.batches)
        if self._channels_last:  # (B, C, H, W) stored as (B, H, W, C)
            batch = Batch(batch.x.contiguous(memory_format=torch.channels_last), batch.y, batch.text)
        return batch

    def _backward(self, micro: Sequence[Any], group: str, inputs: list[torch.nn.Parameter] | None,
                  reduce: bool = False) -> Tensor:
        """Accumulate the gradients of ``group``'s loss over the micro-batches; return the (detached)
        loss. For K micro-batches of a mean loss, grad (1/K) sum_k L_k is the gradient of the mean over
        all K*B examples, so K steps of batch B accumulate to one step of batch K*B. ``inputs``: the
        group's parameters when the model has several (gradients reach only the group being stepped).
        ``reduce``: arm the reducer (several ranks) for the last micro-batch, so the sum is reduced once."""
        scale = 1.0 / len(micro)
        total: Tensor | None = None
        for i, batch in enumerate(micro):
            if reduce and self.reducer is not None and i == len(micro) - 1:
                self.reducer.arm(group)
            with torch.autocast(self.device.type, dtype=self._amp_dtype, enabled=self._amp_dtype is not None):
                out = self._loss_hook(model=self.model, batch=batch, group=group)
            loss = out if isinstance(out, Tensor) else out[group] if isinstance(out, Mapping) else out
            loss = loss.float()
            part = loss * scale if len(micro) > 1 else loss
            (self.scalers[group].scale(part) if self.scalers else part).backward(inputs=inputs)
            total = loss.detach() if total is None else total + loss.detach()
        assert total is not None
        return total * scale if len(micro) > 1 else total

    def _ema_pairs(self) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[Tensor, Tensor]]]:
        """(EMA, live) tensor pairs to average (parameters and the model's ``ema_buffers()``) and to
        copy (every other buffer: a statistic such as LDM's latent scale is not pulled towards its
        initial value). The live tensors of the state dict share storage with the model."""
        if self.ema is None:
            return [], []
        averaged = {n for n, _ in self.model.named_parameters(remove_duplicate=False)} | self.model.ema_buffers()
        avg: list[tuple[Tensor, Tensor]] = []
        copy: list[tuple[Tensor, Tensor]] = []
        for (name, live), e in zip(self.model.state_dict(keep_vars=True).items(), self.ema):
            (avg if name in averaged and e.is_floating_point() else copy).append((e, live.detach()))
        return avg, copy

    def _progress(self):
        if self.quiet or not self.is_main or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=self.config.steps, initial=self.step, desc=f"train {self.model.model_id}",
                    unit="step", dynamic_ncols=True, mininterval=0.5)
