"""Latent diffusion (Rombach et al. 2022): a DDPM in the latent space of a trained autoencoder run.

The autoencoder is a run of the VAE family (``--set autoencoder=RUN_DIR``) loaded through the core
(:func:`unigen.load_run`; this package never imports ``unigen_vae``). It is frozen: requires_grad False,
absent from the parameter groups, kept in eval mode. The diffusion runs on

    z = latent(x) / s  (the encoder mean, Tensor (B, d)),  s = std of the first training batch's latents,

the "scale by std" of Rombach et al. (Sec. 4.3.2 and App. G), stored as a buffer so a checkpoint keeps it.
Samples are decoded through the core's hooks, ``unigen.ops.reverse(autoencoder, s * z)``. Everything else
(schedule, eps-prediction, ancestral and DDIM sampling) is :class:`~unigen_diffusion.ddpm.DDPM`'s, with an MLP
denoiser on the latent vectors.

The autoencoder of the recipe is KL-regularised with a small weight (Rombach et al. Sec. 3.1: "a slight
KL-penalty towards a standard normal", 1e-6 in their configs), declared as ``needs_settings`` and trained by
``unigen train vae --set beta=1e-6``. With the ELBO's weight of 1 the VAE's latents are already close to N(0, I),
so random latents decode to the VAE's own samples and a diffusion prior has little to add. Measured on 32x32
shapes with pure defaults otherwise (a VAE of 100 steps, MMD^2 of 64 samples to held-out images, as
``tests/contract/test_defaults.py`` measures): with beta = 1 the VAE's reconstructions score 0.41 and its prior
samples 0.69, the untrained LDM (random latents through the same decoder) 0.49 and the LDM 0.83 after 100 steps,
0.28 after 400, 0.34 after 1,000: it never halves its untrained score. With beta = 1e-6 the untrained LDM scores
1.15 and the LDM 0.68 after 100 steps, 0.33 after 300 (3.4x), 0.42 after 1,000 (2.7x); with beta = 0.01,
1.04 -> 0.60 after 100. On fashion-mnist (100 steps) beta = 1e-6 gives 0.47 -> 0.14 (3.3x), on digits
1.47 -> 0.095, on moons (500 steps) 1.70 -> 0.011.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from unigen import DataInfo, UnigenError, default_host, load_run, ops
from unigen.plugin import UnsupportedOperation, nonnegative_int, one_of, provider_of, read_run, text_field

from .ddpm import DDPM, SAMPLERS, DDPMConfig


@attrs.frozen(kw_only=True)
class LDMConfig(DDPMConfig):
    autoencoder: str = text_field("")  # a trained VAE-family run directory
    # Latent vectors: an MLP denoiser; 100 DDIM steps are plenty in a 16-d latent (Rombach et al. use 50-200).
    net: str = one_of("mlp", ("mlp",))
    sampler: str = one_of("ddim", SAMPLERS)
    sample_steps: int = nonnegative_int(100)


def load_autoencoder(run_dir: str) -> Any:
    """The autoencoder run's model, or a one-line error naming what to install or fix."""
    if not run_dir:
        raise UnigenError("ldm needs a trained autoencoder run: --set autoencoder=RUN_DIR (e.g. a run of "
                          "'unigen train vae --set beta=1e-6', the KL-regularised autoencoder of the LDM paper)")
    model_id = read_run(run_dir).get("model", "?")
    if model_id not in default_host().models:
        provider = provider_of("models", model_id) or "the plugin that provides it"
        raise UnigenError(f"ldm: the autoencoder run {run_dir} is a {model_id!r} model, which no installed plugin "
                          f"provides: pip install {provider}")
    return load_run(run_dir).model


class LDM(DDPM):
    logprob_kind = "none"
    no_logprob_reason = "latent diffusion bounds log p(z) of the latents, not log p(x) of the data"
    Config = LDMConfig
    default_steps = 100
    needs_runs = {"autoencoder": "vae"}
    needs_settings = {"autoencoder": {"beta": 1e-6}}  # Rombach et al.'s KL-regularised autoencoder
    trainer_defaults = {"lr": 1e-3, "ema_decay": 0.995}
    latent_scale: Tensor  # buffer (): s of the module docstring, 0 until the first training batch sets it

    def diffusion_space(self, config: LDMConfig, data: DataInfo) -> DataInfo:
        ae = load_autoencoder(config.autoencoder)
        if tuple(ae.data.shape) != tuple(data.shape):
            raise UnigenError(f"autoencoder {config.autoencoder} was trained on shape {ae.data.shape}, not {data.shape}")
        try:
            with torch.no_grad():
                d = ae.latent(torch.zeros(1, *data.shape)).shape[1]
        except UnsupportedOperation as exc:
            raise UnigenError(f"ldm: the autoencoder run {config.autoencoder} has no latent(x): {exc}") from None
        self.autoencoder = ae.requires_grad_(False).eval()  # frozen: not in parameter_groups
        self.register_buffer("latent_scale", torch.zeros(()))  # 0 until the first training batch sets it
        return DataInfo(name=f"{data.name}-latent", shape=(d,), kind="vector")

    def train(self, mode: bool = True) -> "LDM":
        super().train(mode)
        self.autoencoder.eval()
        return self

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        z = self.autoencoder.latent(x)  # (B, d)
        if self.latent_scale == 0:  # Rombach et al.'s scale_by_std, from the first batch seen
            self.latent_scale.fill_(float(z.std()))
        return z / self.latent_scale

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        scale = self.latent_scale if self.latent_scale > 0 else torch.ones_like(self.latent_scale)
        return ops.reverse(self.autoencoder, z * scale)

    def logprob(self, x: Tensor) -> Tensor:
        self.unsupported("logprob", self.no_logprob_reason)

    @classmethod
    def example_config(cls, data: DataInfo, workdir: Any) -> LDMConfig:
        """The autoencoder is the tiny 'vae' run the test kit trains in ``workdir/autoencoder``."""
        return cls.Config(autoencoder=str(Path(workdir) / "autoencoder"), timesteps=20, hidden=32, depth=2,
                          sample_steps=5)
