"""Inference export of a trained model: ``model.safetensors`` + ``config.json``.

``config.json`` holds ``{"format": "stg-export", "version": 1, "model": ModelConfig,
"store": the feature store's configuration}``; the weights are the model's state dict in
safetensors. :func:`load_export` also reads a run folder (its ``export/``, else its best or
latest checkpoint) or a checkpoint file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import torch

from stg_cli import files
from stg_cli.errors import UserError, error_text
from stg_cli.models.config import ModelConfig
from stg_cli.models.grounding import GroundingModel

FORMAT = "stg-export"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode), its configuration and its store's."""

    model: GroundingModel
    config: ModelConfig
    store_config: dict


def store_config_dict(config: object) -> dict:
    """A feature store configuration (dataclass, namespace or dict) as a JSON-able dict."""
    if isinstance(config, dict):
        data = dict(config)
    elif is_dataclass(config):
        data = asdict(config)
    else:
        data = dict(vars(config))
    return json.loads(json.dumps(data, default=list))


def save_export(
    model: GroundingModel,
    directory: Path,
    store_config: dict | object,
    text_encoder_dir: Path | None = None,
) -> Path:
    """Writes ``directory/model.safetensors`` and ``directory/config.json`` atomically.

    ``text_encoder_dir`` (the feature store's ``text_encoder/``) is copied to
    ``directory/text_encoder`` so that the export can encode queries on its own.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    with files.atomic_path(directory / WEIGHTS) as weights_tmp:
        save_file(tensors, str(weights_tmp), metadata={"format": FORMAT})
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config.to_dict(),
        "store": store_config_dict(store_config),
    }
    files.write_json(directory / CONFIG, config)
    if text_encoder_dir is not None and Path(text_encoder_dir).is_dir():
        target = directory / "text_encoder"
        staging = directory / f".text_encoder.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(text_encoder_dir, staging)
        files.make_readable(staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return directory


def load_export(path: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Loads a model for inference.

    Args:
        path: an export folder, a run folder (uses ``export/``, else ``checkpoints/best.pt``,
            else the latest ``checkpoints/step-*.pt``), or a checkpoint ``.pt`` file.

    Raises:
        UserError: nothing loadable at ``path``, or a malformed export.
    """
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG).is_file() and (path / WEIGHTS).is_file():
            return _load_export_dir(path, device)
        if (path / "export" / CONFIG).is_file():
            return _load_export_dir(path / "export", device)
        from stg_cli.train.checkpoint import CheckpointManager

        manager = CheckpointManager(path)
        candidate = manager.best_path if manager.best_path.is_file() else manager.latest()
        if candidate is None:
            raise UserError(f"{path} holds no trained model (no export/ and no checkpoints/)")
        return _load_checkpoint_file(candidate, device)
    if path.is_file() and path.suffix == ".pt":
        return _load_checkpoint_file(path, device)
    if path.is_file() and path.name == WEIGHTS:
        return _load_export_dir(path.parent, device)
    raise UserError(f"no trained model at {path} (expected a run folder, an export folder or a .pt)")


def _load_export_dir(directory: Path, device) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = json.loads((directory / CONFIG).read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise UserError(f"cannot read {directory / CONFIG}: {error_text(error)}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f"{directory / CONFIG} is not a stg model export")
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except (KeyError, ValueError, TypeError) as error:
        raise UserError(f"{directory / CONFIG}: malformed model settings: {error_text(error)}") from None
    try:
        state = load_file(str(directory / WEIGHTS), device="cpu")
    except (ValueError, OSError, SafetensorError) as error:
        raise UserError(f"{directory / WEIGHTS}: not readable weights: {error_text(error)}") from None
    return _build(model_config, state, config.get("store", {}), device, directory)


def _load_checkpoint_file(path: Path, device) -> LoadedModel:
    from stg_cli.train.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    try:
        model_config = ModelConfig.from_dict(state["model_config"])
    except (KeyError, ValueError, TypeError) as error:
        raise UserError(f"malformed checkpoint {path}: {error}") from error
    return _build(model_config, state["model"], state.get("store", {}), device, path)


def _build(config: ModelConfig, state: dict, store: dict, device, source: Path) -> LoadedModel:
    model = GroundingModel(config)
    try:
        model.load_weights(state)
    except RuntimeError as error:
        raise UserError(
            f"the weights in {source} do not fit their configuration: {error_text(error)}"
        ) from None
    model.to(device).eval()
    return LoadedModel(model=model, config=config, store_config=dict(store))
