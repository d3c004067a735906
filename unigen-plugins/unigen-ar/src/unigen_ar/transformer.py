"""A GPT-style autoregressive transformer over pixels (Radford et al. 2018/2019; as Image GPT,
Chen et al. 2020, does with pixels as tokens).

The image's levels, read in raster order (rows, columns, then colour channels), are a sequence of
D tokens from a vocabulary of K levels. A start token (id K) is prepended and the decoder predicts
token d from tokens < d:

    h_0 = E[s_d] + P_d,   s = (BOS, v_1, ..., v_{D-1})          learned token and position embeddings
    h_l = h_{l-1} + Attn(LN(h_{l-1})),  h_l += MLP(LN(h_l))     pre-LN blocks (GPT-2), L of them
    P(v_d | v_<d) = softmax(W LN(h_L)_d)

Attn is multi-head causal self-attention, softmax(q k^T / sqrt(d_head) + M) v with M = -inf above
the diagonal (Vaswani et al. 2017, Eq. 1). Training and ``logprob`` use one pass over the whole
sequence. Sampling keeps a key/value cache: the keys and values of earlier positions do not change
when a token is appended (causality), so step d computes q, k, v for the new token only and attends
to the cached k, v. A length-D sample is D network steps of one token each, O(D) token-steps
rather than the O(D^2) of recomputing the prefix (``kv_cache=false`` does that, for comparison).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unigen import DataInfo
from unigen.plugin import flag, fraction, nonnegative_int, positive_float, positive_int

from .base import ARModel


@attrs.frozen(kw_only=True)
class TransformerARConfig:
    dim: int = positive_int(64)  # model width d
    heads: int = positive_int(4)  # attention heads per layer (d / heads each; must divide dim)
    layers: int = positive_int(3)  # transformer blocks
    mlp_ratio: int = positive_int(4)  # each block's MLP is mlp_ratio x d wide (GPT-2: 4)
    dropout: float = fraction(0.0)  # on attention weights and each block's residual branches, in training
    # Sampling only: T = 1 and top_k = 0 draw from the model itself.
    temperature: float = positive_float(1.0)  # T: sampling divides the logits by T (never logprob)
    top_k: int = nonnegative_int(0)  # sampling draws from the k most likely levels only; 0: every level
    kv_cache: bool = flag(True)  # sampling: cache keys/values (O(D) per token); false recomputes the prefix

    @heads.validator
    def _divides(self, attribute, value) -> None:
        if self.dim % value:
            raise ValueError(f"dim {self.dim} is not divisible by heads {value}")


class KVCache:
    """Keys and values of every layer, preallocated for the whole sequence: (B, heads, D, d_head)."""

    def __init__(self, layers: int, batch: int, heads: int, length: int, head_dim: int, like: Tensor) -> None:
        shape = (batch, heads, length, head_dim)
        self.k = [like.new_zeros(shape) for _ in range(layers)]
        self.v = [like.new_zeros(shape) for _ in range(layers)]
        self.length = [0] * layers

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, heads, n, d_head) after the cached ones; return all of them so far."""
        start = self.length[layer]
        end = start + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        self.length[layer] = end
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3x (B, h, n, dh)
        past = 0
        if cache is not None:
            past = cache.length[layer]
            k, v = cache.append(layer, k, v)  # (B, h, past + n, dh)
        # Query at position past + a may see keys at positions <= past + a.
        mask = None
        if n > 1:
            mask = torch.arange(past + n, device=x.device)[None] <= torch.arange(past, past + n, device=x.device)[:, None]
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, n, dh)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))  # (B, n, d)


class Block(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), cache, layer))
        return x + self.drop(self.mlp(self.ln2(x)))


class TransformerAR(ARModel):
    """A GPT-style decoder over the D pixel tokens of an image."""

    Config = TransformerARConfig
    trainer_defaults = {"lr": 1e-3, "grad_clip": 1.0}

    def __init__(self, config: TransformerARConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.length = data.dim  # D tokens
        self.bos = self.levels  # the start token's id, after the K levels
        self.tok = nn.Embedding(self.levels + 1, config.dim)
        self.pos = nn.Parameter(torch.zeros(self.length, config.dim))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.layers)
        )
        self.ln = nn.LayerNorm(config.dim)
        self.out = nn.Linear(config.dim, self.levels)
        self.apply(self._init)
        nn.init.normal_(self.pos, std=0.02)

    @classmethod
    def example_config(cls, data: DataInfo, workdir) -> TransformerARConfig:
        return TransformerARConfig(dim=32, heads=2, layers=2)

    @staticmethod
    def _init(m: nn.Module) -> None:
        # GPT-2's initialisation: N(0, 0.02) weights, zero biases.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    # -- token order ----------------------------------------------------------------------------
    def to_tokens(self, v: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, D) in raster order, channels within a pixel."""
        return v.permute(0, 2, 3, 1).reshape(v.shape[0], -1)

    def from_tokens(self, s: Tensor) -> Tensor:
        """(B, D, ...) -> (B, ..., C, H, W): the inverse of :meth:`to_tokens`, trailing dims first."""
        c, h, w = self.data.shape
        s = s.reshape(s.shape[0], h, w, c, *s.shape[2:])  # (B, H, W, C, ...)
        return s.permute(0, *range(4, s.dim()), 3, 1, 2)

    def network(self, tokens: Tensor, start: int = 0, cache: KVCache | None = None) -> Tensor:
        """Tokens (B, n) at positions start..start+n-1 -> logits (B, n, K)."""
        n = tokens.shape[1]
        x = self.drop(self.tok(tokens) + self.pos[start : start + n])  # (B, n, d)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        return self.out(self.ln(x))

    # -- the two pieces the base class needs ----------------------------------------------------
    def logits(self, v: Tensor) -> Tensor:
        s = self.to_tokens(v)  # (B, D)
        inp = torch.cat([torch.full_like(s[:, :1], self.bos), s[:, :-1]], dim=1)  # (B, D): BOS, v_1..v_{D-1}
        return self.from_tokens(self.network(inp))  # (B, K, C, H, W)

    @torch.no_grad()
    def generate(self, u: Tensor) -> Tensor:
        """D steps. With the cache each step feeds the network one token; without it, the prefix."""
        us = self.to_tokens(u)  # (B, D)
        b = us.shape[0]
        seq = torch.full((b, self.length + 1), self.bos, dtype=torch.long, device=u.device)  # BOS, v_1..v_D
        cache = None
        if self.config.kv_cache:
            cfg = self.config
            cache = KVCache(cfg.layers, b, cfg.heads, self.length, cfg.dim // cfg.heads, self.pos)
        for d in range(self.length):
            if cache is not None:
                logits = self.network(seq[:, d : d + 1], start=d, cache=cache)[:, -1]  # (B, K)
            else:
                logits = self.network(seq[:, : d + 1])[:, -1]  # (B, K)
            seq[:, d + 1] = self.draw(logits, us[:, d])
        return self.from_tokens(seq[:, 1:])  # (B, C, H, W)
