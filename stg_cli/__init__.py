"""stg: self-supervised spatio-temporal grounding of actions in narrated videos.

The Python API (:mod:`stg_cli.api`): :func:`load_grounder`, :func:`encode` and
:class:`GroundingResult`, imported on first use so that ``import stg_cli`` stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = ("load_grounder", "encode", "GroundingResult", "VideoGrounder")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module("stg_cli.api"), name)
    raise AttributeError(f"module 'stg_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
