"""Training of the grounding model on a feature store (``stg train``)."""

from stg_cli.models.checkpoint import CheckpointManager, load_checkpoint
from stg_cli.train.data import Batch, BatchOrder, ClipDataset
from stg_cli.train.losses import LOSS_MODES, LossConfig, global_loss, local_loss, symmetric_nce
from stg_cli.train.loop import (
    StepLog,
    TrainConfig,
    TrainingInterrupted,
    TrainingStopped,
    TrainResult,
    initial_export,
    lr_factor,
    train,
)

__all__ = [
    "LOSS_MODES",
    "Batch",
    "BatchOrder",
    "CheckpointManager",
    "ClipDataset",
    "LossConfig",
    "StepLog",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "TrainingStopped",
    "global_loss",
    "initial_export",
    "load_checkpoint",
    "local_loss",
    "lr_factor",
    "symmetric_nce",
    "train",
]
