"""A rendered benchmark of narrated multi-action videos with exact spatio-temporal ground truth.

``generate(out, SynthConfig.quick())`` writes train/test videos, ASR-like captions and test
annotations in the GroundingYouTube / MiningYouTube formats (see ``stg_cli.synth.generate``).
"""

from stg_cli.synth.config import DIFFICULTIES, Difficulty, SynthConfig
from stg_cli.synth.generate import SynthSummary, generate, plan_all
from stg_cli.synth.render import VideoRenderer

__all__ = [
    "DIFFICULTIES",
    "Difficulty",
    "SynthConfig",
    "SynthSummary",
    "VideoRenderer",
    "generate",
    "plan_all",
]
