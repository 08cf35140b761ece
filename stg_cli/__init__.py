"""stg: self-supervised spatio-temporal grounding of actions in narrated videos."""

__version__ = "0.1.0"
