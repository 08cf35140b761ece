"""The settings of a training run: :class:`TrainConfig` (optimisation) and the model options,
from their defaults, a settings file and the command line, in that order (each later one wins).

A settings file (``stg train --config run.toml``) holds a ``[train]`` table with
:class:`TrainConfig`'s fields and a ``[model]`` table with :data:`MODEL_OPTIONS`::

    [train]
    steps = 600
    batch_size = 64
    lr = 5e-4

    [model]
    dim = 256
    frames_u = 16
    select = "sinkhorn"
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from stg_cli.defaults import DEFAULT_EPOCHS
from stg_cli.errors import UserError
from stg_cli.models.config import ModelConfig

if TYPE_CHECKING:
    from stg_cli.train.losses import LossConfig

#: the model settings a run chooses (the dims and grid come from the feature store)
MODEL_OPTIONS = (
    "dim",
    "frames_u",
    "frames_t",
    "select",
    "attention",
    "gated",
    "cross_logits",
    "cross_temperature",
    "center_video",
    "local_projections",
)

#: how the clips of a step are drawn (:attr:`TrainConfig.negatives`)
NEGATIVES = ("any", "same-video")


@dataclass
class TrainConfig:
    """Optimisation settings of a run (saved in its checkpoints and ``config.json``).

    Attributes:
        steps: optimizer steps of the run; None derives them from ``epochs``.
        epochs: passes over the samples (default 20 when ``steps`` is None too).
        batch_size: clips per step over all processes (split evenly between them).
        lr: peak AdamW learning rate; weight_decay: AdamW weight decay.
        warmup: linear warm-up, a fraction of the steps (< 1) or a number of steps (≥ 1);
            then cosine decay to ``min_lr_ratio`` × lr.
        grad_clip: maximum global gradient norm (0 disables clipping).
        local_chunk: clips per chunk of the local loss (chunk² pairs are attended at once).
        negatives: which clips a step trains on together, i.e. each clip's negatives.
            ``any``: a shuffled draw over all clips. ``same-video``: each epoch visits the
            videos in a shuffled order and each video's clips one after another (shuffled
            among themselves), so a local chunk holds mostly other steps of the clip's own
            video: the same scene, told apart only by the named action (and the global
            batch holds a few videos).
        loss, temperature, margin: see :class:`stg_cli.train.losses.LossConfig`.
        min_time: captions are widened to at least this many seconds.
        amp: bfloat16 autocast; None = on for CUDA, never on the CPU.
        log_every, checkpoint_every: in steps; keep: step checkpoints kept besides best.pt.
        eval_split: a labelled split (:class:`stg_cli.runs.evaluation.LabelledSplit`, e.g. a
            synth benchmark's ``test/``) the model is grounded and scored on at every checkpoint
            and at the end: ``eval.jsonl`` in the run folder, one line per evaluation.
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    local_chunk: int = 16
    negatives: str = "any"
    loss: str = "both"
    temperature: float = 0.07
    margin: float = 0.1
    min_time: float = 5.0
    amp: bool | None = None
    log_every: int = 10
    checkpoint_every: int = 200
    keep: int = 3
    eval_split: str | None = None

    def __post_init__(self) -> None:
        _loss_config(self.loss, self.temperature, self.margin)
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps must be >= 1, got {self.steps}")
        if self.epochs is not None and not self.epochs > 0:
            raise UserError(f"--epochs must be > 0, got {self.epochs}")
        if not self.lr > 0:
            raise UserError(f"--lr must be > 0, got {self.lr}")
        if self.local_chunk < 1:
            raise UserError(f"--local-chunk must be >= 1, got {self.local_chunk}")
        if self.negatives not in NEGATIVES:
            raise UserError(f"--negatives must be one of {', '.join(NEGATIVES)}, got {self.negatives!r}")
        for name in ("log_every", "checkpoint_every", "keep"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} must be >= 1, got {getattr(self, name)}")

    @property
    def loss_config(self) -> LossConfig:
        return _loss_config(self.loss, self.temperature, self.margin)

    def total_steps(self, steps_per_epoch: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        epochs = self.epochs if self.epochs is not None else DEFAULT_EPOCHS
        return max(1, int(round(epochs * steps_per_epoch)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def _loss_config(loss: str, temperature: float, margin: float) -> LossConfig:
    # imported here: the losses need torch, and the configuration must read without it (--help)
    from stg_cli.train.losses import LossConfig

    return LossConfig(loss, temperature, margin)


def model_defaults() -> dict[str, object]:
    """The default of each of :data:`MODEL_OPTIONS` (:class:`ModelConfig`'s)."""
    defaults = {field.name: field.default for field in fields(ModelConfig)}
    return {name: defaults[name] for name in MODEL_OPTIONS}


def train_defaults() -> dict[str, object]:
    """The default of each :class:`TrainConfig` field."""
    return {field.name: field.default for field in fields(TrainConfig)}


def read_settings_file(path: Path | str) -> tuple[dict, dict]:
    """The ``[train]`` and ``[model]`` tables of a settings file.

    Raises:
        UserError: the file is missing or not TOML, or has another table or an unknown key
            (the message names the file and the key).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"settings file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"{path}: not a readable TOML settings file ({error})") from None
    unknown_tables = sorted(set(data) - {"train", "model"})
    if unknown_tables:
        raise UserError(f"{path}: unknown table(s) {', '.join(unknown_tables)} (use [train] and [model])")
    tables = {}
    for table, known in (("train", train_defaults()), ("model", model_defaults())):
        values = data.get(table, {})
        if not isinstance(values, dict):
            raise UserError(f"{path}: {table} must be a table")
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(
                f"{path}: unknown [{table}] key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        tables[table] = dict(values)
    return tables["train"], tables["model"]


def resolve_settings(
    settings_file: Path | str | None, train_options: dict, model_options: dict
) -> tuple[TrainConfig, dict]:
    """The run's :class:`TrainConfig` and model options: the defaults, then the settings file,
    then ``train_options`` / ``model_options`` (a None value means "not given")."""
    train_values, model_values = read_settings_file(settings_file) if settings_file else ({}, {})
    train_values.update({key: value for key, value in train_options.items() if value is not None})
    model_values.update({key: value for key, value in model_options.items() if value is not None})
    try:
        config = TrainConfig(**train_values)
    except TypeError as error:
        raise UserError(f"bad training settings: {error}") from None
    return config, {**model_defaults(), **model_values}
