"""A small StyleGAN2 (Karras et al. 2020), trained like the GAN of this family.

Generator: z ~ N(0, I) -> mapping network f -> w; the synthesis network starts from a learned
constant and every layer is modulated by a style from w (weight demodulation, noise injection); see
:mod:`unigen_gan.stylegan_layers`.

Training (StyleGAN2 Sec. 2-3 and Appendix B):
- the non-saturating logistic loss of :class:`unigen_gan.gan.GAN`, with the R1 penalty on reals
  (Mescheder et al. 2018, Eq. 9):  L_D += gamma / 2 * E_x ||grad_x l(x)||^2;
- style mixing regularization (StyleGAN Sec. 3.1): with probability ``mixing_prob`` an example's
  styles come from w1 = f(z1) before a random crossover layer and from w2 = f(z2) after it;
- the running mean of w, w_avg <- w_avg + (1 - beta)(mean_batch w - w_avg), beta = 0.995, tracked on
  every generator step;
- Adam with lr 2e-3, beta1 = 0, beta2 = 0.99.

Sampling applies the truncation trick (StyleGAN Sec. 5.2, Eq. 3):  w' = w_avg + psi (w - w_avg),
psi = ``truncation`` (1: off), e.g. ``unigen sample RUN --set truncation=0.7``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F
from attrs import validators as v
from torch import Tensor, nn

from unigen import DataInfo

from .base import AdversarialConfig
from .gan import GAN
from .stylegan_layers import MappingNetwork, StyleDiscriminator, SynthesisNetwork

_pos_int = [v.instance_of(int), v.gt(0)]


@attrs.frozen(kw_only=True)
class StyleGANConfig(AdversarialConfig):
    w_dim: int = attrs.field(default=32, validator=_pos_int)  # 512 in the paper
    mapping_layers: int = attrs.field(default=4, validator=_pos_int)  # 8 in the paper
    mixing_prob: float = attrs.field(default=0.9, validator=[v.instance_of(float), v.ge(0), v.le(1)])  # paper: 0.9
    r1_gamma: float = attrs.field(default=0.1, validator=[v.instance_of(float), v.ge(0)])  # small images need little
    w_avg_beta: float = attrs.field(default=0.995, validator=[v.instance_of(float), v.ge(0), v.lt(1)])
    # psi of the truncation trick at sampling time (1: no truncation).
    truncation: float = attrs.field(default=1.0, validator=[v.instance_of(float), v.ge(0)])
    # The paper steps D with the same lr as G (2e-3); on 8x8 digits its equalized-lr discriminator
    # then learns too slowly for short runs (measured, 1000 steps: MMD 0.31 vs 0.13 with 1e-2).
    lr_discriminator: float | None = attrs.field(default=1e-2, validator=v.optional([v.instance_of(float), v.gt(0)]))


class StyleGenerator(nn.Module):
    """Mapping and synthesis networks and the tracked w_avg; ``forward(z)`` maps z to images."""

    def __init__(self, data: DataInfo, config: StyleGANConfig) -> None:
        super().__init__()
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers)
        self.synthesis = SynthesisNetwork(data.shape, config.w_dim, config.width)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: Tensor, truncation: float = 1.0) -> Tensor:
        w = self.mapping(z)  # (B, w_dim)
        if truncation != 1.0:
            w = self.w_avg.lerp(w, truncation)  # w_avg + psi (w - w_avg)
        return self.synthesis(w[:, None].expand(-1, self.synthesis.num_ws, -1))  # (B, C, H, W)


class StyleGAN(GAN):
    """GAN's losses plus R1; StyleGAN2's networks, style mixing and truncation."""

    Config = StyleGANConfig
    data_kinds = ("image",)
    trainer_defaults = {"lr": 2e-3, "betas": (0.0, 0.99)}  # StyleGAN2, Appendix B

    def build_networks(self) -> tuple[nn.Module, nn.Module]:
        if not self.data.is_image:
            raise ValueError(f"stylegan needs image data (C, H, W), got shape {self.data.shape}")
        return StyleGenerator(self.data, self.config), StyleDiscriminator(self.data.shape, self.config.width)

    def generate(self, z: Tensor, track: bool = False) -> Tensor:
        """f(z) with style mixing; on the generator step, w_avg tracks the mean of w."""
        g = self.generator
        w = g.mapping(z)  # (B, w_dim)
        if track:
            with torch.no_grad():
                g.w_avg.lerp_(w.detach().mean(0), 1 - self.config.w_avg_beta)
        n = g.synthesis.num_ws
        ws = w[:, None].expand(-1, n, -1)  # (B, num_ws, w_dim)
        if self.config.mixing_prob > 0:
            w2 = g.mapping(torch.randn_like(z))
            cutoff = torch.randint(1, n, (z.shape[0],), device=z.device)  # the first layer that takes w2
            cutoff = torch.where(torch.rand(z.shape[0], device=z.device) < self.config.mixing_prob, cutoff, n)
            second = torch.arange(n, device=z.device)[None, :] >= cutoff[:, None]  # (B, num_ws)
            ws = torch.where(second[..., None], w2[:, None], ws)
        return g.synthesis(ws)

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """GAN's L_D plus (gamma / 2) E ||grad_x l(x)||^2 on reals, from the same pass over the reals."""
        x = real.detach().requires_grad_(self.config.r1_gamma > 0)
        real_logits = self.discriminator(x)  # (B,)
        loss = F.softplus(-real_logits).mean() + F.softplus(self.discriminator(fake)).mean()
        if self.config.r1_gamma == 0:
            return loss
        (grad,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)  # (B, C, H, W)
        return loss + 0.5 * self.config.r1_gamma * grad.flatten(1).pow(2).sum(1).mean()

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """G(z) with the truncation trick, psi = config.truncation; no style mixing."""
        if z.dim() != 2 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"{self.model_id}.reverse expects z of shape (B, {self.config.z_dim}), got {tuple(z.shape)}")
        return self.generator(z, self.config.truncation)

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> Any:
        return StyleGANConfig(z_dim=8, w_dim=8, width=8, mapping_layers=2)
