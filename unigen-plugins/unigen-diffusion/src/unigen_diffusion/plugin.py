"""Entry point of the diffusion family: registers its model ids."""

from unigen.plugin import ModelSpec, hookimpl

from .consistency import Consistency
from .ddpm import DDIM, DDPM
from .ldm import LDM
from .score_sde import ScoreSDE


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="ddpm", model_cls=DDPM, description="denoising diffusion, ancestral sampling (Ho et al. 2020)"))
    register(ModelSpec(id="ddim", model_cls=DDIM, description="DDPM sampled with DDIM in few steps (Song et al. 2021a)"))
    register(ModelSpec(id="score-sde", model_cls=ScoreSDE, description="VP/VE score SDE, reverse SDE and PF-ODE (Song et al. 2021b)"))
    register(ModelSpec(id="consistency", model_cls=Consistency, description="consistency distillation of a ddpm run (Song et al. 2023)"))
    register(ModelSpec(id="ldm", model_cls=LDM, description="diffusion in a trained VAE's latent space (Rombach et al. 2022)"))
