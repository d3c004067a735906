"""unigen's flow family: RealNVP, CNF (FFJORD), flow matching and rectified flow."""

from .cnf import CNF, CNFConfig
from .flow_matching import FlowMatching, FlowMatchingConfig
from .ode import ODEFlow
from .realnvp import RealNVP, RealNVPConfig
from .rectified_flow import RectifiedFlow, RectifiedFlowConfig

__all__ = [
    "CNF", "CNFConfig", "FlowMatching", "FlowMatchingConfig", "ODEFlow", "RealNVP", "RealNVPConfig",
    "RectifiedFlow", "RectifiedFlowConfig",
]
