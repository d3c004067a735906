"""Entry point of the unified family: its model ids and the ``moons-outliers`` dataset."""

from unigen.plugin import DatasetSpec, ModelSpec, hookimpl

from .data import load_moons_outliers
from .diffflow import DiffFlow
from .ebm import EBM
from .energy_matching import EnergyMatching
from .stochastic_interpolant import StochasticInterpolant
from .unbalanced_ot import UnbalancedOT
from .wasserstein_flow import WassersteinFlow


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="stochastic-interpolant", model_cls=StochasticInterpolant,
                       description="stochastic interpolants, linear/trig/vp schedules (Albergo et al. 2023)"))
    register(ModelSpec(id="diffflow", model_cls=DiffFlow,
                       description="score matching + adversarial term mixed by lambda (Zhang et al. 2023)"))
    register(ModelSpec(id="energy-matching", model_cls=EnergyMatching,
                       description="one scalar potential: OT flow matching, then + contrastive term (Balcerak et al. 2025)"))
    register(ModelSpec(id="ebm", model_cls=EBM,
                       description="energy-based model, contrastive loss, Langevin chains (Du & Mordatch 2019)"))
    register(ModelSpec(id="wasserstein-flow", model_cls=WassersteinFlow,
                       description="pushforward map moved by JKO steps on an MMD (Mokrov et al. 2021)"))
    register(ModelSpec(id="unbalanced-ot", model_cls=UnbalancedOT,
                       description="JKO-MMD flow with a KL mass relaxation, robust to outliers (Chizat et al. 2018)"))


@hookimpl
def unigen_register_datasets(register):
    register(DatasetSpec(id="moons-outliers", load=load_moons_outliers, kind="vector",
                         description="moons with 10% uniform outliers in [-4, 4]^2"))
