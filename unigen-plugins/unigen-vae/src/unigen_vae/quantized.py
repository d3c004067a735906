"""Quantized autoencoders: VQ-VAE (van den Oord et al. 2017) and FSQ (Mentzer et al. 2023).

Both encode x into P latent vectors of dimension d (a grid of positions for images), quantize each
one, and decode with the discretized-Gaussian likelihood of :mod:`unigen_vae.likelihood`. They
differ only in ``quantize`` and in how a code is indexed, so they share one base class.

The prior over codes is factorized: an independent categorical per position (for FSQ, per position
and per dimension), estimated as an exponential moving average of the training codes' frequencies.
For FSQ the table is max(L) wide, and digit k of dimension i has zero mass when k >= L_i, at
initialisation and when sampling (such a digit would decode off the grid).
With the deterministic posterior q(k|x) = 1[k = k(x)] the ELBO is

    log p(x) >= log p(x | z_q(x)) + sum_p log pi_p(k_p(x)),

which ``logprob`` returns (a bound). Sampling draws codes from the prior and decodes them. A learned
autoregressive prior (e.g. PixelCNN over the codes, van den Oord et al. 2017 Sec. 3.2) samples
better; the factorized one keeps this family self-contained.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from attrs import validators as v
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import MLP, Batch, GenerativeModel, nonnegative_float, open_unit, positive_int

from .likelihood import decoder_logp

PRIOR_DECAY = 0.99
# Default code sizes follow the image size: on images of at most SMALL_CODES pixels per channel (8x8 digits, a
# 4x4 grid of positions of 4 pixels each) the prior's term of the bound costs up to log2(K) / 4 bits/dim, so
# the defaults are 8 codes (VQ-VAE) and levels (5, 3) (FSQ, 15 codes); larger images and vectors keep the
# papers' sizes (64 codes; levels (8, 5, 5, 5), Mentzer et al. 2023's for about 1,000 codes). Measured on
# digits (test bits/dim after 250 steps, unigen-vae/tests/test_vae_learns.py's run): VQ-VAE 2.31 with 8 codes,
# 2.46 with 64; FSQ 2.36 with levels (5, 3), 3.45 with (8, 5, 5, 5); independent pixels 2.47.
SMALL_CODES = 64


def small_images(data: DataInfo) -> bool:
    """Images of at most ``SMALL_CODES`` pixels per channel (8x8), which get the small default codes."""
    return data.is_image and data.shape[1] * data.shape[2] <= SMALL_CODES


# -- grid encoder/decoder ------------------------------------------------------------------------
def _grid_sizes(size: int) -> list[int]:
    """Downsample by 2 while larger than 7: 28 -> [28, 14, 7], 8 -> [8, 4]."""
    sizes = [size]
    while sizes[-1] > 7:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class GridEncoder(nn.Module):
    """Images (B, C, H, W) -> (B, P, d) latent vectors on an h x w grid; vectors -> n_latents codes."""

    def __init__(self, data: DataInfo, d: int, width: int, n_latents: int, hidden: int) -> None:
        super().__init__()
        self.image = data.is_image
        if self.image:
            layers: list[nn.Module] = [nn.Conv2d(data.shape[0], width, 3, padding=1), nn.SiLU()]
            for _ in _grid_sizes(data.shape[1])[1:]:
                layers += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.SiLU()]
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, d, 1)]
            self.net = nn.Sequential(*layers)
        else:
            self.net = MLP([data.dim, hidden, hidden, n_latents * d])
        self.d = d

    def forward(self, x: Tensor) -> Tensor:
        if self.image:
            return self.net(x).flatten(2).transpose(1, 2)  # (B, d, h, w) -> (B, P, d)
        return self.net(x).view(x.shape[0], -1, self.d)  # (B, P, d)


class GridDecoder(nn.Module):
    """(B, P, d) -> (B, 2, *D): mean and log-scale of p(x | z)."""

    def __init__(self, data: DataInfo, d: int, width: int, n_latents: int, hidden: int) -> None:
        super().__init__()
        self.data = data
        if data.is_image:
            self.sizes = _grid_sizes(data.shape[1])
            self.inp = nn.Sequential(nn.Conv2d(d, width, 3, padding=1), nn.SiLU())
            self.ups = nn.ModuleList(
                nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.SiLU()) for _ in self.sizes[:-1]
            )
            self.head = nn.Conv2d(width, 2 * data.shape[0], 3, padding=1)
        else:
            self.net = MLP([n_latents * d, hidden, hidden, 2 * data.dim])

    def forward(self, z: Tensor) -> Tensor:
        b = z.shape[0]
        if not self.data.is_image:
            return self.net(z.flatten(1)).view(b, 2, *self.data.shape)
        s = self.sizes[-1]
        h = self.inp(z.transpose(1, 2).reshape(b, -1, s, s))  # (B, P, d) -> (B, width, s, s)
        for size, up in zip(self.sizes[:-1][::-1], self.ups):
            h = up(F.interpolate(h, size=(size, size), mode="nearest"))
        out = self.head(h)  # (B, 2C, H, W)
        return out.view(b, 2, self.data.shape[0], *out.shape[2:])


# -- the shared base ------------------------------------------------------------------------------
class QuantizedAutoencoder(GenerativeModel, metaclass=ABCMeta):
    """Encoder -> quantize -> decoder, with a factorized EMA prior over codes.

    Subclasses define ``code_dim``, ``quantize(z_e) -> (z_q, codes, aux_loss)``, ``prior_shape``
    (categorical variables per position and their number of values), ``code_values(codes)`` (the
    categorical value of each variable) and ``from_values(values)`` (values -> z_q)."""

    family = "vae"
    paradigm = "likelihood"
    logprob_kind = "bound"
    logprob_discrete = True

    code_dim: int
    prior_shape: tuple[int, int]  # (variables per position, values per variable)
    # Buffers (P latent positions, nvar variables each with nval values: prior_shape):
    prior_mask: Tensor  # (nvar, nval) bool: the values each variable can take (prior_support)
    prior: Tensor  # (P, nvar, nval): the factorized EMA prior pi_p over code values

    def __init__(self, config: Any, data: DataInfo) -> None:
        super().__init__(config, data)
        self.encoder = GridEncoder(data, self.code_dim, config.width, config.n_latents, config.hidden)
        self.decoder = GridDecoder(data, self.code_dim, config.width, config.n_latents, config.hidden)
        with torch.no_grad():
            p = self.encoder(torch.zeros(1, *data.shape)).shape[1]
        support = self.prior_support()  # (nvar, nval) bool
        self.register_buffer("prior_mask", support, persistent=False)
        # uniform over each variable's possible values, zero elsewhere
        self.register_buffer("prior", (support / support.sum(-1, keepdim=True)).expand(p, -1, -1).clone())
        self._last_values: Tensor | None = None

    # subclass interface
    @abstractmethod
    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, P, d) -> (z_q with straight-through gradients, codes (B, P), auxiliary loss)."""

    @abstractmethod
    def code_values(self, codes: Tensor) -> Tensor:
        """Codes (B, P) -> the prior's categorical values (B, P, nvar)."""

    @abstractmethod
    def from_values(self, values: Tensor) -> Tensor:
        """Categorical values (B, P, nvar) -> z_q (B, P, d)."""

    def prior_support(self) -> Tensor:
        """(nvar, nval) bool: which values each categorical variable can take (all, by default)."""
        return torch.ones(self.prior_shape, dtype=torch.bool)

    # shared mechanics
    def log_prior(self, values: Tensor) -> Tensor:
        """sum_p log pi_p(values), (B, P, nvar) long -> (B,)."""
        logp = self.prior.clamp_min(1e-6).log()  # (P, nvar, nval)
        idx = values.unsqueeze(-1)
        return logp.unsqueeze(0).expand(values.shape[0], -1, -1, -1).gather(3, idx).squeeze(-1).flatten(1).sum(1)

    def _reconstruction(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z_e = self.encoder(x)
        z_q, codes, aux = self.quantize(z_e)
        out = self.decoder(z_q)
        return decoder_logp(x, out[:, 0], out[:, 1], self.data.levels), codes, aux

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """The quantized latents z_q, (B, P, d)."""
        return self.quantize(self.encoder(x))[0]

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        mean = self.decoder(z)[:, 0]
        return mean.clamp(-1, 1) if self.data.is_image else mean

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        rec, codes, aux = self._reconstruction(batch.x)
        if self.training:
            self._last_values = self.code_values(codes).detach()
        return -rec.mean() / self.data.dim + aux

    def after_step(self, group: str, step: int) -> None:
        """Move the factorized prior towards this batch's code frequencies (EMA)."""
        if self._last_values is None:
            return
        nval = self.prior.shape[-1]
        freq = F.one_hot(self._last_values, nval).to(self.prior.dtype).mean(0)  # (P, nvar, nval)
        self.prior.mul_(PRIOR_DECAY).add_(freq, alpha=1 - PRIOR_DECAY)
        self._last_values = None

    def sample_values(self, num_samples: int) -> Tensor:
        """Categorical values (num_samples, P, nvar) drawn from the prior, only where it has support."""
        p, nvar, nval = self.prior.shape
        probs = self.prior.clamp_min(1e-6) * self.prior_mask  # (P, nvar, nval); impossible values get 0
        values = torch.multinomial(probs.reshape(p * nvar, nval), num_samples, replacement=True)
        return values.T.reshape(num_samples, p, nvar)

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(self.from_values(self.sample_values(num_samples)))

    def logprob(self, x: Tensor) -> Tensor:
        rec, codes, _ = self._reconstruction(x)
        return rec + self.log_prior(self.code_values(codes))

    def latent(self, x: Tensor) -> Tensor:
        return self.forward(x).flatten(1)


# -- VQ-VAE -----------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class VQVAEConfig:
    # K: codes e_1..e_K in the codebook; None: 8 on images of at most 8x8 pixels (SMALL_CODES), 64 otherwise.
    codebook_size: int | None = attrs.field(default=None, validator=v.optional([v.instance_of(int), v.ge(2)]))
    code_dim: int = positive_int(16)  # d: dimension of each code and of each latent vector z_e
    width: int = positive_int(64)  # conv channels of the encoder and decoder (images)
    hidden: int = positive_int(256)  # MLP width of the encoder and decoder (vectors)
    n_latents: int = positive_int(4)  # P, latent vectors per example (vectors; images: one per grid cell)
    commitment: float = nonnegative_float(0.25)  # beta of the commitment loss (van den Oord et al.: 0.25)
    ema_decay: float = open_unit(0.99)  # gamma of the codebook's EMA updates (van den Oord et al.: 0.99)
    # A code whose EMA usage falls below this count is restarted at a random encoder output.
    dead_threshold: float = nonnegative_float(0.01)


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """argmin_k ||z - e_k||^2 for z (N, d), codebook (K, d) -> (N,) long."""
    dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)[None]
    return dist.argmin(1)


class VQVAE(QuantizedAutoencoder):
    """VQ-VAE with EMA codebook updates (van den Oord et al. 2017, App. A.1) and dead-code restarts.

    z_q = e_k with k = argmin ||z_e - e_k||; gradients pass straight through (z_e + sg(z_q - z_e));
    loss = -log p(x | z_q) / D + beta ||z_e - sg(z_q)||^2. The codebook is not trained by gradient:
    after each optimizer step, N_k <- g N_k + (1-g) n_k, m_k <- g m_k + (1-g) sum z_e, e_k = m_k / N_k
    (Laplace-smoothed). A code whose N_k falls below ``dead_threshold`` is moved to a random encoder
    output of the last batch, a common remedy for dead codes (e.g. Dhariwal et al. 2020, Jukebox)."""

    Config = VQVAEConfig
    # Buffers (K = codebook_size codes of dimension d = code_dim), updated by EMA, not by gradient:
    codebook: Tensor  # (K, d): e_k = m_k / N_k
    ema_count: Tensor  # (K,): N_k
    ema_sum: Tensor  # (K, d): m_k

    def __init__(self, config: VQVAEConfig, data: DataInfo) -> None:
        self.code_dim = config.code_dim
        self.codebook_size = config.codebook_size or (8 if small_images(data) else 64)
        self.prior_shape = (1, self.codebook_size)
        super().__init__(config, data)
        k, d = self.codebook_size, config.code_dim
        self.register_buffer("codebook", torch.randn(k, d) * 0.1)
        self.register_buffer("ema_count", torch.ones(k))
        self.register_buffer("ema_sum", self.codebook.clone())
        self._last_batch: tuple[Tensor, Tensor] | None = None

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        flat = z_e.reshape(-1, self.code_dim)  # (B*P, d)
        codes = nearest_code(flat.detach(), self.codebook).view(z_e.shape[:-1])  # (B, P)
        z_q = self.codebook[codes]  # (B, P, d)
        commit = self.config.commitment * F.mse_loss(z_e, z_q.detach())
        if self.training:
            self._last_batch = (flat.detach(), codes.reshape(-1))
        return z_e + (z_q - z_e).detach(), codes, commit

    def code_values(self, codes: Tensor) -> Tensor:
        return codes.unsqueeze(-1)  # (B, P, 1)

    def from_values(self, values: Tensor) -> Tensor:
        return self.codebook[values.squeeze(-1)]

    @torch.no_grad()
    def after_step(self, group: str, step: int) -> None:
        super().after_step(group, step)
        if self._last_batch is None:
            return
        flat, codes = self._last_batch
        self._last_batch = None
        g = self.config.ema_decay
        k = self.codebook_size
        onehot = F.one_hot(codes, k).type_as(flat)  # (N, K)
        self.ema_count.mul_(g).add_(onehot.sum(0), alpha=1 - g)
        self.ema_sum.mul_(g).add_(onehot.T @ flat, alpha=1 - g)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + k * 1e-5) * n  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < self.config.dead_threshold
        if dead.any():
            pick = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
            self.codebook[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0


# -- FSQ ----------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class FSQConfig:
    # Mentzer et al. 2023 recommend levels [8, 5, 5, 5] for a codebook of about 1,000 codes.
    # L_i per latent channel; None: (5, 3) on images of at most 8x8 pixels (SMALL_CODES), (8, 5, 5, 5) otherwise.
    levels: tuple[int, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple))
    width: int = positive_int(64)  # conv channels of the encoder and decoder (images)
    hidden: int = positive_int(256)  # MLP width of the encoder and decoder (vectors)
    # P, latent vectors per example (vectors; images: one per grid cell). 1 on vectors: the prior is independent
    # across positions, so with P > 1 a sample combines codes that never occur together (moons, 500 steps:
    # MMD^2 to held-out points 0.41 with P = 4, 0.09 with P = 1).
    n_latents: int = positive_int(1)

    @levels.validator
    def _levels(self, attribute: Any, value: tuple[int, ...] | None) -> None:
        if value is not None and (not value or not all(isinstance(n, int) and n >= 2 for n in value)):
            raise ValueError(f"'levels' must be integers >= 2, got {value!r}")


def round_ste(z: Tensor) -> Tensor:
    """Round with a straight-through gradient."""
    return z + (z.round() - z).detach()


class FSQ(QuantizedAutoencoder):
    """Finite scalar quantization (Mentzer et al. 2023, Sec. 3).

    Each of the d = len(levels) latent channels is bounded to L_i levels and rounded:
        half_i = (L_i - 1)(1 + eps) / 2,  offset_i = 0.5 if L_i is even else 0,
        shift_i = atanh(offset_i / half_i),
        bound(z)_i = tanh(z_i + shift_i) * half_i - offset_i,
        z_q = round_ste(bound(z)) / (L_i // 2)      in [-1, 1]
    so the implicit codebook is the product grid of prod(L_i) points; no codebook loss, no
    commitment loss, no dead codes. The code of a vector is the mixed-radix number of its digits."""

    Config = FSQConfig
    EPS = 1e-3
    # Buffers, one entry per latent channel i (d = len(levels)), rebuilt from the config:
    levels_t: Tensor  # (d,) long: L_i
    half_range: Tensor  # (d,): half_i
    offset: Tensor  # (d,): offset_i
    shift: Tensor  # (d,): shift_i
    half_width: Tensor  # (d,): L_i // 2, the grid's scale
    basis: Tensor  # (d,) long: the mixed-radix place values prod_{j < i} L_j

    def __init__(self, config: FSQConfig, data: DataInfo) -> None:
        self.levels = config.levels or ((5, 3) if small_images(data) else (8, 5, 5, 5))
        self.code_dim = len(self.levels)
        self.prior_shape = (len(self.levels), max(self.levels))
        super().__init__(config, data)
        levels = torch.tensor(self.levels, dtype=torch.float64)
        half = (levels - 1) * (1 + self.EPS) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0).double()
        self.register_buffer("levels_t", levels.long(), persistent=False)
        self.register_buffer("half_range", half.float(), persistent=False)
        self.register_buffer("offset", offset.float(), persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half).float(), persistent=False)
        self.register_buffer("half_width", (levels.long() // 2).float(), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + list(self.levels[:-1])), 0)
        self.register_buffer("basis", basis, persistent=False)

    def prior_support(self) -> Tensor:
        """Digit k of dimension i exists only for k < L_i: the prior table is (d, max L) wide."""
        levels = torch.tensor(self.levels)
        return torch.arange(max(self.levels))[None, :] < levels[:, None]  # (d, max L)

    @property
    def codebook_size(self) -> int:
        n = 1
        for level in self.levels:
            n *= level
        return n

    def bound(self, z: Tensor) -> Tensor:
        return torch.tanh(z + self.shift) * self.half_range - self.offset

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z_q = round_ste(self.bound(z_e)) / self.half_width  # (B, P, d) on the grid
        return z_q, self.codes_to_indices(z_q), z_e.new_zeros(())

    def codes_to_indices(self, z_q: Tensor) -> Tensor:
        """(..., d) grid points -> (...) integer codes in [0, prod(L))."""
        return (self._to_digits(z_q) * self.basis).sum(-1)

    def indices_to_codes(self, idx: Tensor) -> Tensor:
        """(...) integer codes -> (..., d) grid points."""
        digits = (idx.unsqueeze(-1) // self.basis) % self.levels_t
        return self._from_digits(digits)

    def _to_digits(self, z_q: Tensor) -> Tensor:
        # Grid values are (k - L // 2) / (L // 2) for digits k = 0..L-1, for odd and even L alike.
        return (z_q * self.half_width + self.half_width).round().long()

    def _from_digits(self, digits: Tensor) -> Tensor:
        return (digits.to(self.half_width.dtype) - self.half_width) / self.half_width

    def code_values(self, codes: Tensor) -> Tensor:
        return (codes.unsqueeze(-1) // self.basis) % self.levels_t  # (B, P, d) digits

    def from_values(self, values: Tensor) -> Tensor:
        return self._from_digits(values)
