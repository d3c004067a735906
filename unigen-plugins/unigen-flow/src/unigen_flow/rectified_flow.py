"""Rectified flow with reflow (Liu, Gong & Liu 2023, "Flow Straight and Fast").

1-rectified flow is flow matching on the straight path x_t = (1 - t) x_0 + t x_1 (sigma_min = 0), with
x_0 data at t=0 and x_1 ~ N(0, I) at t=1. **Reflow** (Sec. 2.2, Alg. 1) turns the learned ODE into a new
coupling: draw z ~ N(0, I), solve the current ODE from t=1 to t=0 to get x^ = ODE(z), and retrain (here:
continue training) on the pairs (x_0, x_1) = (x^, z). Each round gives a (k+1)-rectified flow whose paths
are straighter, so few-step Euler samples get better.

The generic trainer knows nothing of this, so reflow lives in the model contract: after step
``R * r`` (r = 1..num_reflows) ``after_step`` regenerates the coupling buffer (``reflow_pairs`` pairs,
``reflow_steps`` steps of the configured sampler) and the loss switches to pairs drawn from it. The
round length R is ``reflow_every`` when set; by default the run (its length comes from the trainer's
``on_train_start``) is split into num_reflows + 1 equal rounds, e.g.
``unigen train rectified-flow --data digits --steps 6000 --set num_reflows=2`` reflows after steps
2000 and 4000.
The coupling is a buffer, so a resumed run keeps it.

Straightness (Liu et al. Eq. 7), measured along the ODE trajectory from z to x^ before each reflow:

    S = int_0^1 E || (x_1 - x_0) - v(x_t, t) ||^2 dt / D          (0 for perfectly straight paths),

and the path deviation, the RMS distance (per dimension) of x_t from the chord (1 - t) x^ + t z. They are
recorded per round in the buffers ``straightness`` and ``path_deviation`` (entry r: the r+1-rectified flow
that generated round r+1's pairs; -1: not measured), logged to the ``unigen_flow`` logger, returned by
:meth:`RectifiedFlow.reflow_report`, and printed by ``unigen eval RUN --metrics straightness`` (which also
measures the current model). With ``ema_decay > 0`` the EMA copy of these buffers lags; read them from
the live weights (``load_run(run, ema=False)``).
"""

from __future__ import annotations

import logging

import attrs
import torch
from torch import Tensor

from unigen import DataInfo, UnigenError
from unigen.plugin import Batch, fraction, nonnegative_int, positive_int

from .flow_matching import FlowMatching, FlowMatchingConfig
from .ode import ODEFlow

log = logging.getLogger("unigen_flow")


@attrs.frozen(kw_only=True)
class RectifiedFlowConfig(FlowMatchingConfig):
    sigma_min: float = fraction(0.0)  # 0: the straight line x_t = (1 - t) x_0 + t x_1 of Liu et al.
    num_reflows: int = nonnegative_int(0)  # k: reflow rounds in the run; 0 is plain (1-)rectified flow
    # trainer steps per round; None: the run split into num_reflows + 1 equal rounds
    reflow_every: int | None = positive_int(None, optional=True)
    reflow_pairs: int = positive_int(4096)  # size of the coupling
    # ODE steps used to generate the pairs: accurate endpoints matter more than speed here.
    reflow_steps: int = positive_int(50)


@torch.no_grad()
def measure_straightness(model: ODEFlow, z: Tensor, steps: int, segments: int = 10) -> tuple[float, float]:
    """(S, path deviation) of the model's ODE trajectories started at z (t=1), see the module docstring.
    S integrates over t with the trapezoid rule on ``segments + 1`` points."""
    ts, xs = model.trajectory(z, steps, segments)
    x_hat = xs[-1]
    chord = z - x_hat  # dx/dt of the straight line from x^ (t=0) to z (t=1)
    d = z[0].numel()
    s_vals, dev_vals = [], []
    for t, x in zip(ts, xs):
        tv = torch.full((z.shape[0],), t, device=z.device, dtype=z.dtype)
        s_vals.append((chord - model.velocity(x, tv)).pow(2).flatten(1).sum(1).mean() / d)
        line = (1 - t) * x_hat + t * z
        dev_vals.append(((x - line).pow(2).flatten(1).sum(1) / d).sqrt().mean())
    s = torch.stack(s_vals)
    s_int = ((s[1:] + s[:-1]) / 2).mean()  # trapezoid on a uniform grid over [0, 1]
    return float(s_int), float(torch.stack(dev_vals).mean())


class RectifiedFlow(FlowMatching):
    Config = RectifiedFlowConfig
    default_steps = 20
    # Buffers (saved in checkpoints, so a resumed run continues its rounds):
    reflow_round: Tensor  # (), long: reflows done so far
    straightness: Tensor  # (num_reflows + 1,): S before each reflow, -1 until measured
    path_deviation: Tensor  # (num_reflows + 1,): mean distance to the straight line, -1 until measured
    coupling_x0: Tensor  # (reflow_pairs, *D): the data end x^ of the coupling (only when num_reflows > 0)
    coupling_x1: Tensor  # (reflow_pairs, *D): the noise end z of the coupling (only when num_reflows > 0)

    def __init__(self, config: RectifiedFlowConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        k = config.num_reflows
        self.register_buffer("reflow_round", torch.zeros((), dtype=torch.long))
        self.register_buffer("straightness", torch.full((k + 1,), -1.0))
        self.register_buffer("path_deviation", torch.full((k + 1,), -1.0))
        if k:
            self.register_buffer("coupling_x0", torch.zeros(config.reflow_pairs, *data.shape))  # x^ (data end)
            self.register_buffer("coupling_x1", torch.zeros(config.reflow_pairs, *data.shape))  # z (noise end)
        self.round_steps: int | None = config.reflow_every  # set from the run's length in on_train_start

    def pairs(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Data and fresh noise before the first reflow; afterwards pairs drawn from the coupling."""
        if int(self.reflow_round) == 0:
            return super().pairs(batch)
        idx = torch.randint(0, self.config.reflow_pairs, (len(batch),), device=self.coupling_x0.device)
        return self.coupling_x0[idx], self.coupling_x1[idx]

    def on_train_start(self, total_steps: int, step: int) -> None:
        """Without ``reflow_every``, rounds of total_steps // (num_reflows + 1) steps."""
        self.round_steps = self.config.reflow_every or max(total_steps // (self.config.num_reflows + 1), 1)

    def after_step(self, group: str, step: int) -> None:
        """Reflow after step ``R * r`` (``step`` counts from 0) for r = 1..num_reflows."""
        r = int(self.reflow_round)
        if r >= self.config.num_reflows:
            return
        if self.round_steps is None:
            raise UnigenError("rectified-flow: set reflow_every, or call on_train_start(total_steps, step) "
                              "before training outside the trainer, so that reflow rounds can be scheduled")
        if step + 1 == self.round_steps * (r + 1):
            self.reflow()

    @torch.no_grad()
    def reflow(self, chunk: int = 1024) -> None:
        """Replace the coupling with (ODE(z), z) from the current model, record the straightness."""
        c = self.config
        was_training = self.training
        self.eval()
        r = int(self.reflow_round)
        for start in range(0, c.reflow_pairs, chunk):
            n = min(chunk, c.reflow_pairs - start)
            z = torch.randn(n, *self.data.shape, device=self.device, dtype=self.dtype)
            if start == 0:  # measure on the first chunk: trajectory and endpoints both
                s, dev = measure_straightness(self, z[:256], c.reflow_steps)
                self.straightness[r], self.path_deviation[r] = s, dev
            self.coupling_x1[start : start + n] = z
            self.coupling_x0[start : start + n] = self.reverse(z, c.reflow_steps)
        self.reflow_round.fill_(r + 1)
        log.info("rectified-flow reflow round %d: straightness S=%.4g, path deviation=%.4g of the %d-rectified flow",
                 r + 1, s, dev, r + 1)
        self.train(was_training)

    def reflow_report(self) -> list[dict[str, float]]:
        """Per round r (0: the 1-rectified flow): the straightness measured before reflow r + 1."""
        return [{"rectified": r + 1, "straightness": float(s), "path_deviation": float(d)}
                for r, (s, d) in enumerate(zip(self.straightness, self.path_deviation)) if s >= 0]

    @classmethod
    def example_config(cls, data: DataInfo, workdir) -> RectifiedFlowConfig:
        # One reflow after the first of the contract's two training steps exercises the coupling path.
        return RectifiedFlowConfig(hidden=32, depth=2, width=8, rtol=1e-3, atol=1e-3, num_reflows=1,
                                   reflow_every=1, reflow_pairs=32, reflow_steps=4)
