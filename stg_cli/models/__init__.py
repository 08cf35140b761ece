"""The global-local grounding model (projections, frame selection, local attention stack)."""

from stg_cli.models.config import ATTENTION_STACKS, ModelConfig
from stg_cli.models.grounding import (
    HEATMAP_MODES,
    ForwardOutput,
    GroundingModel,
    LocalOutput,
    Projection,
)

__all__ = [
    "ATTENTION_STACKS",
    "HEATMAP_MODES",
    "ForwardOutput",
    "GroundingModel",
    "LocalOutput",
    "ModelConfig",
    "Projection",
]
