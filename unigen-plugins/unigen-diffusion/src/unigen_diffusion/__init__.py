"""unigen's diffusion family: DDPM, DDIM, score SDEs (VP/VE), consistency distillation, latent diffusion."""

from .consistency import Consistency, ConsistencyConfig
from .ddpm import DDIM, DDPM, DDIMConfig, DDPMConfig
from .ldm import LDM, LDMConfig
from .score_sde import ScoreSDE, ScoreSDEConfig

__all__ = [
    "DDPM", "DDPMConfig", "DDIM", "DDIMConfig", "ScoreSDE", "ScoreSDEConfig", "Consistency",
    "ConsistencyConfig", "LDM", "LDMConfig",
]
