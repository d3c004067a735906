"""Entry point of the flow family: registers its model ids and the ``straightness`` metric."""

from __future__ import annotations

from typing import Any

import torch

from unigen.plugin import MetricSpec, ModelSpec, hookimpl

from .cnf import CNF
from .flow_matching import FlowMatching
from .ode import ODEFlow
from .realnvp import RealNVP
from .rectified_flow import RectifiedFlow, measure_straightness


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="realnvp", model_cls=RealNVP, description="affine coupling flow, multi-scale (Dinh et al. 2017)"))
    register(ModelSpec(id="cnf", model_cls=CNF, description="continuous normalizing flow, FFJORD (Grathwohl et al. 2019)"))
    register(ModelSpec(id="flow-matching", model_cls=FlowMatching,
                       description="conditional flow matching, linear path (Lipman et al. 2023)"))
    register(ModelSpec(id="rectified-flow", model_cls=RectifiedFlow,
                       description="rectified flow with reflow (Liu et al. 2023)"))


@torch.no_grad()
def straightness_metric(ctx: Any) -> dict[str, Any]:
    """Liu et al.'s straightness S and the path deviation of an ODE flow's trajectories (n <= 500 paths,
    the model's default steps), plus the per-round record of a rectified flow's reflows."""
    model = ctx.model
    if not isinstance(model, ODEFlow):
        return {"straightness": None, "straightness_reason": f"{model.model_id} is not an ODE flow"}
    gen = torch.Generator().manual_seed(ctx.seed)
    z = torch.randn(min(ctx.n, 500), *model.data.shape, generator=gen).to(model.device)
    s, dev = measure_straightness(model, z, type(model).default_steps or 20)
    out: dict[str, Any] = {"straightness": s, "path_deviation": dev}
    if isinstance(model, RectifiedFlow):
        for row in model.reflow_report():
            out[f"straightness_{row['rectified']}_rectified"] = row["straightness"]
            out[f"path_deviation_{row['rectified']}_rectified"] = row["path_deviation"]
    return out


@hookimpl
def unigen_register_metrics(register):
    register(MetricSpec(id="straightness", compute=straightness_metric,
                        description="ODE path straightness (Liu et al. 2023) and reflow record"))
