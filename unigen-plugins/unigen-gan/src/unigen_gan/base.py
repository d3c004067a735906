"""The adversarial mechanics shared by every GAN of the family, written once.

A generator G maps a latent z ~ N(0, I) of shape (B, z_dim) (the latent's shape, never the data's)
to data; a discriminator (a critic, for the Wasserstein GANs) D scores data. Training alternates

    D step:  minimise  L_D(x, G(z))   with G(z) a constant (computed without a graph), so the
             discriminator's update cannot move the generator;
    G step:  minimise  L_G(G(z'))     with fresh z' and D(G(z')) recomputed by the *current*
             (just-updated) discriminator; gradients flow through D into G, and the trainer
             backpropagates only into G's parameters.

(Goodfellow et al. 2014, Algorithm 1; the same loop with n_critic D steps per G step is Algorithm 1
of Arjovsky et al. 2017 and of Gulrajani et al. 2017.)

The generic trainer drives this through the model contract, with no GAN branch of its own:

=============================  ============================================================
``parameter_groups()``          {"discriminator" (or "critic"): D's params, "generator": G's}, D first
``active_groups(step)``         the critic every step, the generator every n_critic-th step
``loss(batch, group)``          L_D or L_G for the group about to be stepped
``optimizer_settings(group)``   a per-group learning rate (``lr_discriminator``/``lr_generator``)
``after_step(group, step)``     e.g. WGAN's weight clipping
``trainer_defaults``            each paper's optimizer, by the kind of data (a property)
=============================  ============================================================

A variant overrides only its formulas and networks: ``discriminator_loss``, ``generator_loss``,
``build_networks`` and, for StyleGAN, ``generate`` (style mixing) and ``reverse`` (truncation).
GANs have no encoder and no tractable likelihood: ``forward`` and ``logprob`` raise
:class:`unigen.UnsupportedOperation`.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import Batch, GenerativeModel, positive_float, positive_int

from . import networks


@attrs.frozen(kw_only=True)
class AdversarialConfig:
    # Latent size; None: by the data (Adversarial.z_dim): 32 for images, the data's own dimension for vectors.
    z_dim: int | None = positive_int(None, optional=True)
    width: int = positive_int(32)  # conv channels at full resolution
    hidden: int = positive_int(128)  # MLP width, for vector data
    # Discriminator (critic) steps per generator step.
    n_critic: int = positive_int(1)
    # Per-group learning rates (e.g. TTUR, Heusel et al. 2017); None uses the trainer's lr.
    lr_discriminator: float | None = positive_float(None, optional=True)  # the discriminator's (critic's) lr
    lr_generator: float | None = positive_float(None, optional=True)  # the generator's lr; None: the trainer's


class Adversarial(GenerativeModel, metaclass=ABCMeta):
    """Base class of the family: a generator and a discriminator trained against each other."""

    family = "gan"
    paradigm = "implicit"
    logprob_kind = "none"
    no_logprob_reason = "a GAN's generator is an implicit model: it has no tractable likelihood"
    Config: ClassVar[type] = AdversarialConfig
    # The name of the discriminator's parameter group ("critic" for the Wasserstein GANs).
    critic_group: ClassVar[str] = "discriminator"

    def __init__(self, config: Any, data: DataInfo) -> None:
        super().__init__(config, data)
        self.generator, self.discriminator = self.build_networks()

    # -- what a variant overrides ---------------------------------------------------------------
    def build_networks(self) -> tuple[nn.Module, nn.Module]:
        """(G: (B, z_dim) -> (B, *D), D: (B, *D) -> (B,)). DCGAN for images, MLPs for vectors."""
        c = self.config
        return (networks.generator(self.data, self.z_dim, c.width, c.hidden),
                networks.discriminator(self.data, c.width, c.hidden, self.discriminator_norm()))

    def discriminator_norm(self) -> str:
        return "batch"

    @abstractmethod
    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """L_D on real data (B, *D) and constant fakes (B, *D): a scalar."""

    @abstractmethod
    def generator_loss(self, fake: Tensor) -> Tensor:
        """L_G on fakes (B, *D) that carry the generator's graph: a scalar."""

    def generate(self, z: Tensor, track: bool = False) -> Tensor:
        """The training-time generator (B, z_dim) -> (B, *D). ``track`` marks the generator step's
        pass, where running statistics of the generator (StyleGAN's w_avg) are updated."""
        return self.generator(z)

    # -- the adversarial step -----------------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        """The latent's size: the config's, or by the data. Vectors take the data's own dimension, as the
        2-D toy experiments of Gulrajani et al. 2017 (``gan_toy.py``: z of size 2 for 2-D data; a 32-D
        latent on moons left wgan-gp at MMD^2 0.019 after 3,000 steps, 2-D at 0.006); images take 32."""
        if self.config.z_dim is not None:
            return self.config.z_dim
        return 32 if self.data.is_image else self.data.dim

    def sample_latent(self, n: int) -> Tensor:
        """z ~ N(0, I), shape (n, z_dim)."""
        return torch.randn(n, self.z_dim, device=self.device, dtype=self.dtype)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {self.critic_group: list(self.discriminator.parameters()), "generator": list(self.generator.parameters())}

    def active_groups(self, step: int) -> tuple[str, ...]:
        """n_critic critic steps, the last of them followed by one generator step."""
        if (step + 1) % self.config.n_critic == 0:
            return (self.critic_group, "generator")
        return (self.critic_group,)

    def optimizer_settings(self, group: str) -> dict[str, Any]:
        lr = self.config.lr_generator if group == "generator" else self.config.lr_discriminator
        return {} if lr is None else {"lr": lr}

    def loss(self, batch: Batch, group: str | None = None) -> Tensor | dict[str, Tensor]:
        """L_D for the critic group, L_G for "generator"; both (a dict) when no group is given."""
        if group is None:
            return {g: self.group_loss(batch, g) for g in self.parameter_groups()}
        return self.group_loss(batch, group)

    def group_loss(self, batch: Batch, group: str) -> Tensor:
        """The scalar loss of one parameter group (a variant adding a term overrides this)."""
        real = batch.x
        if group == self.critic_group:
            with torch.no_grad():  # the fakes are constants of L_D: no gradient can reach G
                fake = self.generate(self.sample_latent(real.shape[0]))
            return self.discriminator_loss(real, fake)
        if group == "generator":
            return self.generator_loss(self.generate(self.sample_latent(real.shape[0]), track=True))
        raise ValueError(f"{self.model_id} has no parameter group {group!r}; known: {', '.join(self.parameter_groups())}")

    # -- the five operations --------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        self.unsupported("forward", "a GAN has no encoder: nothing maps data back to the latent z")

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """The generator: z (B, z_dim) -> x (B, *D)."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"{self.model_id}.reverse expects z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        return self.generator(z)

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        """Generated examples; images clamped to the data range (StyleGAN's generator has no tanh)."""
        x = self.reverse(self.sample_latent(num_samples))
        return x.clamp(-1, 1) if self.data.is_image else x

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> Any:
        return attrs.evolve(cls.Config(), z_dim=8, width=8, hidden=32)
