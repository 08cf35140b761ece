"""Spatio-temporal grounding of free-text queries in untrimmed videos (``stg ground``).

- :mod:`stg_cli.ground.queries`: query files (``q.txt`` or ``vid2step.json`` pools);
- :mod:`stg_cli.ground.temporal`: frame × query cosines → labels and segments;
- :mod:`stg_cli.ground.spatial`: cell probabilities → point, mask and box in video pixels;
- :mod:`stg_cli.ground.output`: the prediction files.
"""

from stg_cli.ground.output import VideoGrounding, safe_name, write_combined, write_prediction
from stg_cli.ground.queries import QuerySet, load_queries
from stg_cli.ground.spatial import DEFAULT_MASK_THRESHOLD, FrameLocation, locate
from stg_cli.ground.temporal import DEFAULT_SMOOTH, DEFAULT_TAU, TemporalDetection, detect

__all__ = [
    "DEFAULT_MASK_THRESHOLD",
    "DEFAULT_SMOOTH",
    "DEFAULT_TAU",
    "FrameLocation",
    "QuerySet",
    "TemporalDetection",
    "VideoGrounding",
    "detect",
    "load_queries",
    "locate",
    "safe_name",
    "write_combined",
    "write_prediction",
]
