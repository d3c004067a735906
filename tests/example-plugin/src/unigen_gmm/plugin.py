"""Hook implementations: this module is the entry point named in pyproject.toml."""

from unigen.plugin import ModelSpec, hookimpl

from .model import GMM


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="gmm", model_cls=GMM, description="Gaussian mixture, exact likelihood (example plugin)"))
