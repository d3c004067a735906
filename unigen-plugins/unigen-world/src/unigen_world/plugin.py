"""Entry point of the world-model family: registers its model ids and the linear-probe metric."""

from unigen.plugin import MetricSpec, ModelSpec, hookimpl

from .jepa import JEPA
from .probe import probe
from .transfusion import Transfusion


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="jepa", model_cls=JEPA,
                       description="I-JEPA: predicting masked-block embeddings with an EMA target (Assran et al. 2023)"))
    register(ModelSpec(id="transfusion", model_cls=Transfusion,
                       description="one transformer, next-token text loss + flow-matching image loss (Zhou et al. 2024)"))


@hookimpl
def unigen_register_metrics(register):
    register(MetricSpec(id="probe", compute=probe,
                        description="linear probe on frozen embeddings vs raw pixels, and a collapse check"))
