"""Transfusion: one transformer over text and images (Zhou et al. 2024, "Transfusion: Predict the
Next Token and Diffuse Images with One Multi-Modal Model").

A caption and its image become one sequence. Caption first (the text-to-image direction):

    [BOS c_1 ... c_n EOS PAD ...][BOI][x_t patches 1..P]          (L = T + 1 + P positions)

and, with probability ``image_first`` (the paper puts the caption first 80% of the time), image first
(the captioning direction): ``[BOI][x_t patches][BOS c_1 ... EOS PAD ...]``. Text tokens are
characters (:mod:`unigen.data.text`); each image patch is a linear embedding of its p x p pixels plus
a 2-D position and the embedding of its time t.

Attention (Sec. 3.2): causal over the whole sequence, except that the patches of one image attend
to each other in both directions; PAD keys are hidden. So a text token sees the tokens before it
(and, image first, the whole image), and every patch sees the text before the image and all patches.

Loss (Eq. 4):  L = L_LM + lambda * L_image,  lambda = ``image_loss_weight`` (the paper's 5), with

* L_LM: next-token cross-entropy, mean over the caption's tokens c_1 ... EOS (BOS is given);
* L_image: flow matching in place of the paper's DDPM epsilon loss (the brief allows either), with
  the shared time convention t=0 data, t=1 noise:  x_t = (1 - t) x_0 + t eps,  target velocity
  dx_t/dt = eps - x_0,  L_image = mean over patches and pixels of ||v_theta(x_t, t) - (eps - x_0)||^2,
  t ~ U(0, 1). When the image precedes its caption, t ~ U(0, ``caption_max_t``) so the caption is
  read off a mostly clean image (the paper caps noise at t=500 of 1000 in that case).

Classifier-free guidance (Sec. 4.3): the caption is dropped (replaced by the empty caption, no LM
loss) with probability ``cond_drop``; sampling uses v = v_uncond + w (v_cond - v_uncond),
w = ``guidance``.

Generation: ``prompt`` set (``unigen sample RUN --prompt "a handwritten digit three"``): every image
is drawn for that caption; ``prompt`` None: each caption is first sampled from the model's own
language model (so captions follow the training captions' distribution), then its image. Images are
drawn by integrating dx/dt = v from t=1 to t=0 with a registered ODE sampler. The other direction,
image to text, is :meth:`Transfusion.caption`: greedy decoding after the clean image.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unigen import ConfigError, DataInfo
from unigen.plugin import (
    Batch,
    GenerativeModel,
    TimeEmbedding,
    TransformerBlock,
    get_sampler,
    nonnegative_float,
    positive_float,
    positive_int,
    probability,
    text_field,
)
from unigen.plugin import text as tokens

from .patches import patch_size_for, patchify, sincos_2d, unpatchify


def _check_prompt(inst, attr, value):
    if value is not None:
        tokens.check_text(value)  # a character outside the alphabet fails when the config is built


@attrs.frozen(kw_only=True)
class TransfusionConfig:
    patch_size: int | None = positive_int(None, optional=True)  # None: 2 up to 16 px, else 4
    dim: int = positive_int(128)  # transformer width d (a multiple of 4 and of heads)
    depth: int = positive_int(4)  # transformer blocks, shared by text tokens and image patches
    heads: int = positive_int(4)  # attention heads per block
    text_len: int = positive_int(32)  # caption length in characters T when the data does not set one
    image_loss_weight: float = nonnegative_float(5.0)  # paper's lambda
    image_first: float = probability(0.2)  # share of image-then-caption sequences
    caption_max_t: float = probability(0.5)  # noise cap when the image comes first
    cond_drop: float = probability(0.1)  # caption dropout for guidance
    # Sampling-time settings (change with `unigen sample RUN --set key=value`).
    prompt: str | None = attrs.field(default=None, validator=_check_prompt)  # None: captions sampled first
    guidance: float = nonnegative_float(3.0)  # w of classifier-free guidance; 1: the conditional field alone
    sampler: str = text_field("heun")  # the registered ODE solver from noise (t=1) to images (t=0)
    temperature: float = positive_float(1.0)  # divides the caption logits when captions are sampled

    @heads.validator  # the later field of the pair, so both have passed their own type checks
    def _dim(self, attr, value):
        if self.dim % 4 or self.dim % value:
            raise ValueError(f"dim {self.dim} must be a multiple of 4 and of heads {value}")


class Transfusion(GenerativeModel):
    family = "world"
    paradigm = "world"
    logprob_kind = "none"
    Config = TransfusionConfig
    data_kinds = ("text-image",)
    default_steps = 25
    no_logprob_reason = ("Transfusion's image part is trained with a flow-matching loss, which bounds no "
                         "likelihood without an ODE trace that this model does not implement")
    trainer_defaults = {"lr": 1e-3}
    patch_pos: Tensor  # buffer (P, d): the fixed 2-D sin-cos position of each image patch

    def __init__(self, config: TransfusionConfig, data: DataInfo) -> None:
        super().__init__(config, data)
        self.p = patch_size_for(data, config.patch_size)
        c, h, w = data.shape
        self.grid = (h // self.p, w // self.p)
        self.P = self.grid[0] * self.grid[1]
        self.T = data.text_len or config.text_len
        self.V = max(data.vocab_size or 0, tokens.VOCAB_SIZE)
        if config.prompt is not None and len(config.prompt) + 2 > self.T:
            raise ConfigError(f"prompt {config.prompt!r} is longer than the {self.T - 2} characters this model reads")
        d, pd = config.dim, c * self.p * self.p
        self.tok = nn.Embedding(self.V, d)
        self.text_pos = nn.Parameter(torch.randn(self.T, d) * 0.02)
        self.boi = nn.Parameter(torch.randn(d) * 0.02)
        self.patch_in = nn.Linear(pd, d)
        self.register_buffer("patch_pos", sincos_2d(d, *self.grid), persistent=False)  # (P, d)
        self.temb = TimeEmbedding(d)
        self.blocks = nn.ModuleList(TransformerBlock(d, config.heads) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, self.V)
        self.patch_out = nn.Linear(d, pd)
        nn.init.zeros_(self.patch_out.weight)
        nn.init.zeros_(self.patch_out.bias)

    # -- the mixed sequence ---------------------------------------------------------------------
    def layout_mask(self, image_first: bool) -> Tensor:
        """Bool (L, L), True = may attend: causal, plus full attention among the P image patches."""
        L, T, P = self.T + 1 + self.P, self.T, self.P
        mask = torch.ones(L, L, dtype=torch.bool, device=self.device).tril()
        lo = 1 if image_first else T + 1  # first patch position
        mask[lo : lo + P, lo : lo + P] = True
        return mask

    def attention_mask(self, text: Tensor, image_first: Tensor) -> Tensor:
        """Per-example mask (B, L, L): the layout's mask with PAD keys hidden (a row always sees itself)."""
        b, L = text.shape[0], self.T + 1 + self.P
        pad = text == tokens.PAD  # (B, T)
        none = torch.zeros(b, 1 + self.P, dtype=torch.bool, device=text.device)
        pad_keys = torch.where(image_first[:, None], torch.cat([none, pad], 1), torch.cat([pad, none], 1))  # (B, L)
        base = torch.where(image_first[:, None, None], self.layout_mask(True), self.layout_mask(False))  # (B, L, L)
        eye = torch.eye(L, dtype=torch.bool, device=text.device)
        return base & (~pad_keys[:, None, :] | eye)

    def run(self, text: Tensor, patches: Tensor, t: Tensor, image_first: Tensor) -> tuple[Tensor, Tensor]:
        """One pass over the mixed sequences.

        :param text: (B, T) tokens; ``patches``: (B, P, C*p*p) noisy patches x_t; ``t``: (B,);
            ``image_first``: (B,) bool, the layout of each sequence.
        :return: text logits (B, T, V) (row i predicts token i+1) and velocities (B, P, C*p*p).
        """
        T, P = self.T, self.P
        tx = self.tok(text) + self.text_pos  # (B, T, d)
        bo = self.boi.expand(text.shape[0], 1, -1)  # (B, 1, d)
        im = self.patch_in(patches) + self.patch_pos + self.temb(t)[:, None]  # (B, P, d)
        first = image_first[:, None, None]
        h = torch.where(first, torch.cat([bo, im, tx], 1), torch.cat([tx, bo, im], 1))  # (B, L, d)
        mask = self.attention_mask(text, image_first).unsqueeze(1)  # (B, 1, L, L), broadcast over heads
        for blk in self.blocks:
            h = blk(h, mask)
        h = self.norm(h)
        h_text = torch.where(first, h[:, 1 + P :], h[:, :T])  # (B, T, d)
        h_img = torch.where(first, h[:, 1 : 1 + P], h[:, T + 1 :])  # (B, P, d)
        return self.lm_head(h_text), self.patch_out(h_img)

    def empty_text(self, n: int) -> Tensor:
        """The empty caption [BOS EOS PAD ...]: (n, T)."""
        return tokens.encode([""] * n, self.T).to(self.device)

    # -- training -------------------------------------------------------------------------------
    def loss_terms(
        self, batch: Batch, *, t: Tensor | None = None, noise: Tensor | None = None,
        image_first: Tensor | None = None, drop: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The two parts of the loss, ``{"text": L_LM, "image": L_image}``. The random choices (time,
        noise, layout, caption dropout) are drawn here unless given."""
        x0 = batch.x
        b = x0.shape[0]
        text = batch.text if batch.text is not None else self.empty_text(b)  # image-only data: no caption
        if text.shape[1] != self.T:
            raise ValueError(f"text of length {text.shape[1]} given to a model built for {self.T}")
        if image_first is None:
            image_first = torch.rand(b, device=x0.device) < self.config.image_first
        if drop is None:
            drop = (torch.rand(b, device=x0.device) < self.config.cond_drop) & ~image_first
        if t is None:
            t = torch.rand(b, device=x0.device, dtype=x0.dtype)
            t = torch.where(image_first, t * self.config.caption_max_t, t)
        if noise is None:
            noise = torch.randn_like(x0)
        text = torch.where(drop[:, None], self.empty_text(b), text)
        tb = t.view(b, 1, 1, 1)
        x_t = (1 - tb) * x0 + tb * noise  # (B, C, H, W)
        logits, vel = self.run(text, patchify(x_t, self.p), t, image_first)
        image = F.mse_loss(vel, patchify(noise - x0, self.p))
        target = text[:, 1:].masked_fill(drop[:, None], tokens.PAD)  # (B, T-1); dropped captions: no LM loss
        ce = F.cross_entropy(logits[:, :-1].reshape(-1, self.V), target.reshape(-1), ignore_index=tokens.PAD,
                             reduction="sum")
        count = (target != tokens.PAD).sum().clamp(min=1)
        return {"text": ce / count, "image": image}

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """L = L_LM + lambda * L_image (Eq. 4)."""
        parts = self.loss_terms(batch)
        return parts["text"] + self.config.image_loss_weight * parts["image"]

    # -- text -> image -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate_captions(self, n: int) -> Tensor:
        """Sample n captions from the model's language model (caption-first layout): (n, T) tokens."""
        text = torch.full((n, self.T), tokens.PAD, dtype=torch.long, device=self.device)
        text[:, 0] = tokens.BOS
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        blank = torch.zeros(n, self.P, self.patches_dim, device=self.device, dtype=self.dtype)
        first, t1 = torch.zeros(n, dtype=torch.bool, device=self.device), torch.ones(n, device=self.device)
        for i in range(self.T - 1):
            logits = self.run(text, blank, t1, first)[0][:, i] / self.config.temperature  # (n, V)
            logits[:, [tokens.PAD, tokens.BOS]] = float("-inf")
            nxt = torch.multinomial(logits.softmax(-1), 1).squeeze(1)
            if i == self.T - 2:
                nxt = torch.full_like(nxt, tokens.EOS)  # the row is full: end the caption
            text[:, i + 1] = torch.where(done, torch.full_like(nxt, tokens.PAD), nxt)
            done |= nxt == tokens.EOS
            if bool(done.all()):
                break
        return text

    @property
    def patches_dim(self) -> int:
        return self.data.shape[0] * self.p * self.p

    def prompt_tokens(self, n: int) -> Tensor:
        """(n, T): the configured prompt repeated, or captions sampled from the model."""
        if self.config.prompt is None:
            return self.generate_captions(n)
        return tokens.encode([self.config.prompt], self.T).to(self.device).expand(n, -1)

    def velocity(self, x: Tensor, t: Tensor, text: Tensor) -> Tensor:
        """Guided dx/dt for images x (B, C, H, W) at times t (B,) given captions (B, T)."""
        b = x.shape[0]
        w = self.config.guidance
        first = torch.zeros(b, dtype=torch.bool, device=x.device)
        patches = patchify(x, self.p)
        if w == 1.0:
            return unpatchify(self.run(text, patches, t, first)[1], self.p, self.data.shape)
        both = torch.cat([text, self.empty_text(b)])
        v = self.run(both, patches.repeat(2, 1, 1), t.repeat(2), first.repeat(2))[1]
        v_cond, v_uncond = v[:b], v[b:]
        return unpatchify(v_uncond + w * (v_cond - v_uncond), self.p, self.data.shape)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """The forward (noising) process x_t = (1 - t) x + t eps; t None: pure noise (t = 1)."""
        if t is None:
            return torch.randn_like(x)
        tb = t.view(-1, *([1] * (x.dim() - 1)))
        return (1 - tb) * x + tb * torch.randn_like(x)

    @torch.no_grad()
    def reverse(self, z: Tensor, steps: int | None = None, text: Tensor | None = None) -> Tensor:
        """Noise z (B, C, H, W) at t=1 -> images at t=0 for the captions ``text`` (default: the prompt,
        or captions sampled from the model)."""
        text = self.prompt_tokens(z.shape[0]) if text is None else text.to(self.device)
        solver = get_sampler(self.config.sampler, kind="ode", host=self.host)
        x = solver.solve(lambda x, t: self.velocity(x, t, text), z, steps or self.default_steps)
        return x.clamp(-1, 1)

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        return self.reverse(torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.dtype), steps)

    # -- image -> text -----------------------------------------------------------------------------
    @torch.no_grad()
    def caption(self, x: Tensor) -> list[str]:
        """Captions for images x (B, C, H, W): greedy decoding after the clean image (image first, t=0)."""
        b = x.shape[0]
        text = torch.full((b, self.T), tokens.PAD, dtype=torch.long, device=self.device)
        text[:, 0] = tokens.BOS
        patches = patchify(x.to(self.device), self.p)
        first, t0 = torch.ones(b, dtype=torch.bool, device=self.device), torch.zeros(b, device=self.device)
        done = torch.zeros(b, dtype=torch.bool, device=self.device)
        for i in range(self.T - 1):
            logits = self.run(text, patches, t0, first)[0][:, i]
            logits[:, [tokens.PAD, tokens.BOS]] = float("-inf")
            nxt = logits.argmax(-1)
            text[:, i + 1] = torch.where(done, torch.full_like(nxt, tokens.PAD), nxt)
            done |= nxt == tokens.EOS
            if bool(done.all()):
                break
        return tokens.decode(text)

    @classmethod
    def example_config(cls, data: DataInfo, workdir) -> TransfusionConfig:
        return TransfusionConfig(dim=32, depth=2, heads=2)
