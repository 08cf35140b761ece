"""Training of the grounding model on a feature store (``stg train``). Names are imported on
first use (:mod:`stg_cli.lazy`), so that ``stg_cli.train.config`` reads without torch."""

from stg_cli.lazy import lazy_exports

_EXPORTS = {
    "CheckpointManager": "stg_cli.models.checkpoint",
    "load_checkpoint": "stg_cli.models.checkpoint",
    "Batch": "stg_cli.train.data",
    "BatchOrder": "stg_cli.train.data",
    "ClipDataset": "stg_cli.train.data",
    "LOSS_MODES": "stg_cli.train.losses",
    "LossConfig": "stg_cli.train.losses",
    "global_loss": "stg_cli.train.losses",
    "local_loss": "stg_cli.train.losses",
    "symmetric_nce": "stg_cli.train.losses",
    "TrainConfig": "stg_cli.train.config",
    "CheckpointSaved": "stg_cli.train.events",
    "Evaluated": "stg_cli.train.events",
    "PriorsScored": "stg_cli.train.events",
    "RunStarted": "stg_cli.train.events",
    "StepLog": "stg_cli.train.events",
    "TrainEvent": "stg_cli.train.events",
    "TrainingInterrupted": "stg_cli.train.loop",
    "TrainingStopped": "stg_cli.train.loop",
    "TrainResult": "stg_cli.train.loop",
    "initial_export": "stg_cli.train.loop",
    "lr_factor": "stg_cli.train.loop",
    "train": "stg_cli.train.loop",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
