"""Run by tests/core/test_scale.py, alone or under torchrun: train a deterministic two-group model
(critic and generator, n_critic = 2) with gradient accumulation and small gradient buckets, and save
the parameters (rank 0). ``python ddp_two_groups.py OUT BATCH``."""

from __future__ import annotations

import sys

import attrs
import torch
from torch import nn

import unigen
import unigen.trainer
from unigen.distributed import DistributedContext
from unigen.trainer import Trainer


@attrs.frozen
class Cfg:
    """No hyperparameters: the test model's sizes are fixed."""


class TwoNets(unigen.GenerativeModel):
    family = "test"
    Config = Cfg

    def __init__(self, config, data):
        super().__init__(config, data)
        self.critic = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
        self.generator = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))

    def parameter_groups(self):
        return {"critic": list(self.critic.parameters()), "generator": list(self.generator.parameters())}

    def active_groups(self, step):
        return ("critic", "generator") if step % 2 == 1 else ("critic",)

    def loss(self, batch, group=None):
        fake = self.generator(batch.x.flip(1) * 0.5)  # deterministic "latents"
        if group == "critic":
            return self.critic(fake.detach()).mean() - self.critic(batch.x).mean() + self.critic(batch.x).pow(2).mean()
        return -self.critic(fake).mean()


if __name__ == "__main__":
    out, batch = sys.argv[1], int(sys.argv[2])
    ctx = DistributedContext.from_env("cpu")
    unigen.trainer.BUCKET_MB = 0.002  # a few parameters per bucket: several asynchronous all-reduces per group
    data = unigen.Dataset(info=unigen.DataInfo(name="t", shape=(2,), kind="vector"),
                          x=torch.randn(256, 2, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    model = TwoNets(Cfg(), data.info)
    Trainer(model, data, {"steps": 6, "batch_size": batch, "grad_accum": 2, "lr": 1e-2, "optimizer": "sgd",
                          "checkpoint_minutes": 0.0}, quiet=True, rank=ctx.rank, world_size=ctx.world_size).fit()
    if ctx.is_main:
        torch.save({n: p.detach() for n, p in model.named_parameters()}, out)
    ctx.close()
