"""A small StyleGAN2 (Karras et al. 2020), trained like the GAN of this family.

Generator: z ~ N(0, I) -> mapping network f -> w; the synthesis network starts from a learned
constant and every layer is modulated by a style from w (weight demodulation, noise injection); see
:mod:`unigen_gan.stylegan_layers`.

Training (StyleGAN2 Sec. 2-3 and Appendix B):
- the non-saturating logistic loss of :class:`unigen_gan.gan.GAN`, with the R1 penalty on reals
  (Mescheder et al. 2018, Eq. 9):  L_D += gamma / 2 * E_x ||grad_x l(x)||^2, gamma = ``r1_gamma`` = 1
  (measured; StyleGAN2-ADA's heuristic gamma = 0.0002 H W / B would give 0.0002 on 8x8 digits);
- the fakes D judges are the synthesis network's images clamped to the data range [-1, 1], as
  :meth:`sample` returns them. The paper's generator has no output nonlinearity and its images are
  clipped only when saved; on the digits (half the pixels exactly -1) the discriminator then told fakes
  by a background that misses -1 by a little, and the generator never learned it (below);
- style mixing regularization (StyleGAN Sec. 3.1): with probability ``mixing_prob`` an example's
  styles come from w1 = f(z1) before a random crossover layer and from w2 = f(z2) after it;
- path-length regularisation (StyleGAN2 Sec. 3.2, Eq. 4), lazily (Sec. 3.1): every ``pl_interval`` (4)
  generator steps, on half a batch,

      L_G += pl_interval * w_pl * E_{w, y} (||J_w^T y||_2 - a)^2,   y ~ N(0, I) / sqrt(H W),

  with a the running mean of the lengths, a <- a + 0.01 (mean_batch ||J_w^T y|| - a), and w_pl = 2
  (``pl_weight``; 0 turns it off);
- the running mean of w, w_avg <- w_avg + (1 - beta)(mean_batch w - w_avg), beta = 0.995, tracked on
  every generator step;
- a generator EMA (StyleGAN2 Appendix B, from Karras et al. 2018): after each generator step,
  G_ema <- beta G_ema + (1 - beta) G with beta = 0.5^(B / half-life), half-life ``ema_half_life`` = 10,000
  images (0: off), ramped up as 0.05 x the images seen (``ema_rampup``, StyleGAN2-ADA's setting, so
  that short runs do not sample a near-initial G_ema). The model does it in ``after_step``; sampling
  uses G_ema;
- Adam with beta1 = 0, beta2 = 0.99 and lr 2e-3 for the generator (the paper's; the trainer's default
  here) and ``lr_discriminator`` = 1e-2 for the discriminator (see that field: the paper's 2e-3 learns
  too slowly on 8x8 digits in short runs).

Images up to 32 px take StyleGAN2-ADA's CIFAR-10 configuration (Karras et al. 2020b, its ``--cfg=cifar``):
a 2-layer mapping network, no style mixing, no path-length regularisation, a discriminator without
residual skips (:data:`BY_SIZE`; each is a config field whose None means "by the image size"). Its
minibatch-std group of 32 (4 here) measured no different on digits.

Sampling applies the truncation trick (StyleGAN Sec. 5.2, Eq. 3):  w' = w_avg + psi (w - w_avg),
psi = ``truncation`` (1: off), e.g. ``unigen sample RUN --set truncation=0.7``.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import Batch, fraction, nonnegative_float, nonnegative_int, positive_float, positive_int, probability

from .base import AdversarialConfig
from .gan import GAN
from .stylegan_layers import D_ARCHITECTURES, MappingNetwork, StyleDiscriminator, SynthesisNetwork, path_lengths


@attrs.frozen(kw_only=True)
class StyleGANConfig(AdversarialConfig):
    w_dim: int = positive_int(32)  # size of the intermediate latent w (paper: 512)
    # Layers of the mapping network z -> w; None: by the image size (StyleGAN.setting: 2 up to 32 px, else 4; paper: 8).
    mapping_layers: int | None = positive_int(None, optional=True)
    # Share of examples trained with two styles; None: by the image size (0 up to 32 px, else the paper's 0.9).
    mixing_prob: float | None = probability(None, optional=True)
    # gamma of the R1 penalty on reals (measured on 8x8 digits, 300 steps: MMD^2 0.018 with 1, 0.022-0.030 with 0.1).
    r1_gamma: float = nonnegative_float(1.0)
    w_avg_beta: float = fraction(0.995)  # decay of the running mean w_avg used by truncation (paper: 0.995)
    # psi of the truncation trick at sampling time (1: no truncation).
    truncation: float = nonnegative_float(1.0)
    # The paper steps D with the same lr as G (2e-3); on 8x8 digits its equalized-lr discriminator
    # then learns too slowly for short runs (measured, 300 steps: MMD 0.096 vs 0.047 with 1e-2).
    lr_discriminator: float | None = positive_float(1e-2, optional=True)
    # The discriminator: "resnet" (StyleGAN2 Fig. 7c) or "orig" (no skips, Fig. 7a); None: by the image size
    # ("orig" up to 32 px, StyleGAN2-ADA's CIFAR-10 setting; else "resnet").
    discriminator: str | None = attrs.field(default=None, validator=v.optional(v.in_(D_ARCHITECTURES)))
    # Path-length regularisation (Sec. 3.2): weight w_pl (paper: 2; 0 = off; None: by the image size, 0 up to
    # 32 px as StyleGAN2-ADA on CIFAR-10, else 2), lazy interval k (paper: 4), the decay of the running mean a
    # (paper: 0.01) and the batch shrink of the regularisation pass (paper: 2).
    pl_weight: float | None = nonnegative_float(None, optional=True)
    pl_interval: int = positive_int(4)  # k: the penalty runs every k-th generator step, weighted by k
    pl_decay: float = attrs.field(default=0.01, validator=[v.instance_of(float), v.gt(0), v.le(1)])  # of a
    pl_batch_shrink: int = positive_int(2)  # the penalty's batch is the training batch // this
    # Generator EMA half-life in images (paper: 10,000); 0 samples from the raw generator.
    ema_half_life: int = nonnegative_int(10_000)
    # The half-life grows as rampup x the images seen until it reaches ema_half_life (StyleGAN2-ADA's
    # ema_rampup = 0.05, Karras et al. 2020b), so short runs do not sample a near-initial G_ema; 0: off.
    ema_rampup: float = nonnegative_float(0.05)


# The settings that depend on the image size: (images up to SMALL_IMAGE px, larger ones). The small ones are
# StyleGAN2-ADA's CIFAR-10 configuration (Karras et al. 2020b; ``train.py --cfg=cifar`` of its code): a 2-layer
# mapping, no style mixing, no path-length regularisation, the discriminator without residual skips.
SMALL_IMAGE = 32
BY_SIZE: dict[str, tuple[Any, Any]] = {
    "mapping_layers": (2, 4), "mixing_prob": (0.0, 0.9), "pl_weight": (0.0, 2.0), "discriminator": ("orig", "resnet"),
}


def setting(config: StyleGANConfig, data: DataInfo, name: str) -> Any:
    """The config's value of ``name``, or its default for the data's image size (:data:`BY_SIZE`)."""
    value = getattr(config, name)
    if value is not None:
        return value
    return BY_SIZE[name][0 if data.shape[-1] <= SMALL_IMAGE else 1]


class StyleGenerator(nn.Module):
    """Mapping and synthesis networks and the tracked w_avg; ``forward(z)`` maps z to images."""

    w_avg: Tensor  # buffer (w_dim,): the running mean of w, the centre of the truncation trick

    def __init__(self, data: DataInfo, config: StyleGANConfig, z_dim: int) -> None:
        super().__init__()
        self.mapping = MappingNetwork(z_dim, config.w_dim, setting(config, data, "mapping_layers"))
        self.synthesis = SynthesisNetwork(data.shape, config.w_dim, config.width)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: Tensor, truncation: float = 1.0) -> Tensor:
        w = self.mapping(z)  # (B, w_dim)
        if truncation != 1.0:
            w = self.w_avg.lerp(w, truncation)  # w_avg + psi (w - w_avg)
        return self.synthesis(w[:, None].expand(-1, self.synthesis.num_ws, -1))  # (B, C, H, W)


class StyleGAN(GAN):
    """GAN's losses plus R1 (``r1_gamma`` 1); StyleGAN2's networks, style mixing and truncation.

    Measured on 8x8 digits (300 steps, width 16, seeds 0/1/2; pixel MMD^2 to held-out digits, a fitted
    4-component Gaussian mixture scores 0.026, the DCGAN 0.007 in 600 steps): 0.018/0.018/0.018, 78-80% read
    by a classifier of real digits with p > 0.5, every class at least 22 times in 500. Before the two fixes
    below it plateaued at 0.13-0.18 (0.14 after 1,000 steps). Found by swapping networks with the DCGAN's:
    the DCGAN generator against this discriminator reached 0.028, this generator against the DCGAN's
    discriminator 0.076. Then, on seed 0: D judging clamped fakes 0.18 -> 0.047 (a tanh output: 0.056;
    without noise inputs: 0.30); StyleGAN2-ADA's small-image settings 0.030; the discriminator without
    skips 0.025; R1 gamma 1 instead of 0.1: 0.018 (0.1: 0.022-0.030 on seeds 0-2). The paper's D lr 2e-3
    (instead of 1e-2) left 0.096 (clamped fakes); 600 steps reach 0.017, width 32 0.013 in 300 steps."""

    Config = StyleGANConfig
    data_kinds = ("image",)
    trainer_defaults = {"lr": 2e-3, "betas": (0.0, 0.99)}  # StyleGAN2, Appendix B
    generator: StyleGenerator  # G, and G_ema its moving average
    generator_ema: StyleGenerator
    pl_mean: Tensor  # buffer (): a, the running mean of the path lengths
    generator_steps: Tensor  # buffer (), long: generator steps taken (the lazy interval counts them)

    def build_networks(self) -> tuple[nn.Module, nn.Module]:
        if not self.data.is_image:
            raise ValueError(f"stylegan needs image data (C, H, W), got shape {self.data.shape}")
        d = StyleDiscriminator(self.data.shape, self.config.width, setting(self.config, self.data, "discriminator"))
        return StyleGenerator(self.data, self.config, self.z_dim), d

    def __init__(self, config: StyleGANConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        # G_ema: a copy outside every parameter group, moved only by after_step (see the module docstring).
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.register_buffer("pl_mean", torch.zeros(()))
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        self._batch = 0  # the batch size of the last generator loss: the EMA's beta depends on it

    def setting(self, name: str) -> Any:
        """A size-dependent setting (``mapping_layers``, ``mixing_prob``, ``pl_weight``, ``discriminator``)."""
        return setting(self.config, self.data, name)

    def generate(self, z: Tensor, track: bool = False) -> Tensor:
        """g(f(z)) with style mixing, clamped to the data range [-1, 1] as :meth:`sample` returns it; on
        the generator step, w_avg tracks the mean of w."""
        return self.generator.synthesis(self.styles(z, track)).clamp(-1, 1)

    def styles(self, z: Tensor, track: bool = False) -> Tensor:
        """The per-layer styles (B, num_ws, w_dim) of z (B, z_dim), with style mixing."""
        g = self.generator
        w = g.mapping(z)  # (B, w_dim)
        if track:
            with torch.no_grad():
                g.w_avg.lerp_(w.detach().mean(0), 1 - self.config.w_avg_beta)
        n = g.synthesis.num_ws
        ws = w[:, None].expand(-1, n, -1)  # (B, num_ws, w_dim)
        mixing_prob = self.setting("mixing_prob")
        if mixing_prob > 0:
            w2 = g.mapping(torch.randn_like(z))
            cutoff = torch.randint(1, n, (z.shape[0],), device=z.device)  # the first layer that takes w2
            cutoff = torch.where(torch.rand(z.shape[0], device=z.device) < mixing_prob, cutoff, n)
            second = torch.arange(n, device=z.device)[None, :] >= cutoff[:, None]  # (B, num_ws)
            ws = torch.where(second[..., None], w2[:, None], ws)
        return ws

    def path_length_penalty(self, z: Tensor) -> Tensor:
        """w_pl E (||J_w^T y|| - a)^2 on the styles of z, updating a (the running mean) in training."""
        lengths, _ = path_lengths(self.generator.synthesis, self.styles(z))  # (B,)
        mean = self.pl_mean.lerp(lengths.mean().detach(), self.config.pl_decay)
        if self.training:
            self.pl_mean.copy_(mean)
        return self.setting("pl_weight") * (lengths - mean).pow(2).mean()

    def group_loss(self, batch: Batch, group: str) -> Tensor:
        """GAN's losses; every ``pl_interval``-th generator step adds pl_interval x the path-length penalty."""
        out = super().group_loss(batch, group)
        c = self.config
        if group == "generator":
            self._batch = batch.x.shape[0]
        if group == "generator" and self.setting("pl_weight") > 0 and int(self.generator_steps) % c.pl_interval == 0:
            n = max(1, batch.x.shape[0] // c.pl_batch_shrink)
            out = out + c.pl_interval * self.path_length_penalty(self.sample_latent(n))
        return out

    def after_step(self, group: str, step: int) -> None:
        """After a generator step: count it and move G_ema towards G (beta = 0.5^(B / half-life))."""
        if group != "generator":
            return
        self.generator_steps += 1
        if self.config.ema_half_life == 0:
            return
        half_life = float(self.config.ema_half_life)
        if self.config.ema_rampup > 0:
            half_life = min(half_life, self.config.ema_rampup * int(self.generator_steps) * self._batch)
        beta = 0.5 ** (self._batch / max(half_life, 1e-8))
        with torch.no_grad():
            for e, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
                e.lerp_(p, 1 - beta)
            for e_buf, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
                e_buf.copy_(b)  # w_avg is already a running mean: copied, not averaged again

    @property
    def sampling_generator(self) -> nn.Module:
        """G_ema, or G itself when the EMA is off (``ema_half_life`` = 0)."""
        return self.generator_ema if self.config.ema_half_life else self.generator

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """G_ema(z) with the truncation trick, psi = config.truncation; no style mixing."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"{self.model_id}.reverse expects z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        return self.sampling_generator(z, self.config.truncation)

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> Any:
        return StyleGANConfig(z_dim=8, w_dim=8, width=8, mapping_layers=2)
