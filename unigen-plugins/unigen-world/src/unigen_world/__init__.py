"""unigen's world-model family: I-JEPA (Assran et al. 2023) and Transfusion (Zhou et al. 2024)."""

from .jepa import JEPA, JEPAConfig
from .transfusion import Transfusion, TransfusionConfig

__all__ = ["JEPA", "JEPAConfig", "Transfusion", "TransfusionConfig"]
