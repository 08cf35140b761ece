"""The global-local grounding model (projections, frame selection, local attention stack), its
configuration, exports and checkpoints. Names are imported on first use (:mod:`stg_cli.lazy`),
so that ``stg_cli.models.config`` reads without torch."""

from stg_cli.lazy import lazy_exports

_EXPORTS = {
    "ATTENTION_STACKS": "stg_cli.models.config",
    "ModelConfig": "stg_cli.models.config",
    "HEATMAP_MODES": "stg_cli.models.grounding",
    "ForwardOutput": "stg_cli.models.grounding",
    "GroundingModel": "stg_cli.models.grounding",
    "LocalOutput": "stg_cli.models.grounding",
    "Projection": "stg_cli.models.grounding",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
