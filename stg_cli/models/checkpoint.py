"""Training checkpoints: atomic writes, keep the last k and the best, safe loading.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values (model,
optimizer and scheduler state, RNG states, the data position, the configurations and the
feature store's fingerprint), so it loads with ``torch.load(weights_only=True)``.

Layout in a run folder: ``checkpoints/step-00000100.pt`` (the last ``keep``) and
``checkpoints/best.pt`` (with ``--eval``: the evaluated checkpoint with the best
``BEST_EVAL_METRIC`` of :mod:`stg_cli.train.loop`; without: the lowest smoothed training loss
at checkpoint time).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from stg_cli import files
from stg_cli.errors import UserError

FORMAT = "stg-checkpoint"
VERSION = 1
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def atomic_torch_save(state: dict, path: Path) -> None:
    """torch.save to ``path`` atomically and durably (:mod:`stg_cli.files`)."""
    with files.atomic_path(path, durable=True) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: Path) -> dict:
    """Loads a checkpoint on the CPU with ``weights_only=True``.

    Raises:
        UserError: missing, unreadable or not a stg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot read checkpoint {path}: {first}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a stg training checkpoint")
    if int(state.get("version", 0)) > VERSION:
        raise UserError(f"{path} was written by a newer stg (version {state.get('version')})")
    return state


class CheckpointManager:
    """Writes ``step-*.pt`` checkpoints of a run, prunes old ones and keeps ``best.pt``."""

    def __init__(self, run_dir: Path, keep: int = 3) -> None:
        self.directory = Path(run_dir) / "checkpoints"
        self.keep = max(1, int(keep))

    def path_for(self, step: int) -> Path:
        return self.directory / f"step-{step:08d}.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def steps(self) -> list[int]:
        """Steps with a checkpoint, ascending."""
        if not self.directory.is_dir():
            return []
        found = [_STEP_FILE.match(entry.name) for entry in self.directory.iterdir()]
        return sorted(int(match.group(1)) for match in found if match)

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path_for(steps[-1]) if steps else None

    def save(self, state: dict, step: int, best: bool = False) -> Path:
        """Writes the checkpoint of ``step`` (and ``best.pt``), then removes the oldest."""
        state = {"format": FORMAT, "version": VERSION, **state}
        path = self.path_for(step)
        atomic_torch_save(state, path)
        if best:
            atomic_torch_save(state, self.best_path)
        for old in self.steps()[: -self.keep]:
            self.path_for(old).unlink(missing_ok=True)
        return path
