"""What a training run reports as it goes: one dataclass per kind of event, passed to the
``on_event`` callback of :func:`stg_cli.train.train` on rank 0 (:data:`TrainEvent`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RunStarted:
    """The run is set up: clips, steps (the first is ``start_step`` + 1 when resumed),
    processes, device, bfloat16 autocast, the model settings."""

    samples: int
    total_steps: int
    start_step: int
    steps_per_epoch: int
    world_size: int
    device: str
    amp: bool
    model: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StepLog:
    """What the progress display and ``metrics.jsonl`` show after a step."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    loss_global: float | None
    loss_local: float | None
    lr: float
    grad_norm: float
    clips_per_s: float
    elapsed_s: float
    eta_s: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint was written (``best``: it is also ``best.pt``)."""

    path: Path
    step: int
    best: bool


@dataclass(frozen=True)
class Evaluated:
    """``--eval``: the scores of the model at ``step`` on the labelled split (percent, ``tau``,
    ``failed``), as one ``eval.jsonl`` line holds them."""

    step: int
    scores: dict

    def to_dict(self) -> dict:
        return {"step": self.step, **self.scores}


@dataclass(frozen=True)
class PriorsScored:
    """``--eval``: the model-free priors' pointing game given true timing on the split
    (prior → percent), what the model's is compared with."""

    pointing: dict[str, float]


TrainEvent = RunStarted | StepLog | CheckpointSaved | Evaluated | PriorsScored
