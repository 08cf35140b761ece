"""stg: self-supervised spatio-temporal grounding of actions in narrated videos.

The Python API (:mod:`stg_cli.api`): :func:`load_grounder`, :func:`encode` and
:class:`GroundingResult`, imported on first use (:mod:`stg_cli.lazy`) so that ``import stg_cli``
stays light.
"""

from stg_cli.lazy import lazy_exports

__version__ = "0.1.0"

_API = ("load_grounder", "encode", "GroundingResult", "VideoGrounder")
__all__ = ["__version__", *_API]
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_API, "stg_cli.api"))
