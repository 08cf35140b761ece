"""The native ops of stg and their public Python entry points.

Each op has a pure-PyTorch reference in :mod:`stg_cli.ops.reference`; the functions here run
the compiled kernels of ``stg_cli._C`` when available and the reference otherwise.
"""

from stg_cli.ops._native import NativeStatus, status
from stg_cli.ops.rollout import rollout, rollout_paper
from stg_cli.ops.selection import SELECTION_MODES, FrameSelection, select_frames
from stg_cli.ops.sinkhorn import sinkhorn
from stg_cli.ops.xattn import xattn

__all__ = [
    "SELECTION_MODES",
    "FrameSelection",
    "NativeStatus",
    "rollout",
    "rollout_paper",
    "select_frames",
    "sinkhorn",
    "status",
    "xattn",
]
