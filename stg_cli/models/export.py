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

import stg_cli
from stg_cli import files
from stg_cli.errors import UserError, error_text
from stg_cli.models.checkpoint import CheckpointManager, load_checkpoint
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


#: the score rows of a model card, in order: metric key → title
CARD_METRICS = {
    "iou_point": "IoU+Point",
    "map_mean": "video mAP (mean over tube IoU 0.1–0.5)",
    "pointing_game": "pointing game",
    "temporal_iou": "temporal IoU (steps and order given)",
    "pointing_true_timing": "pointing game, given true timing",
    "pointing_wrong_query": "pointing, true timing, wrong query (control)",
    "pointing_distractor_query": "pointing, true timing, distractor query (control)",
}


@dataclass(frozen=True)
class ModelCard:
    """What a model card says about how an export was trained (the rest is read from the
    export's config.json): steps done and planned, training clips, the first and last loss,
    the training settings, and with ``--eval`` its last evaluation row and the model-free
    priors' pointing game given true timing on the same split (prior → percent); the
    calibrated detection threshold τ (None: not calibrated)."""

    steps: int
    total_steps: int
    samples: int
    first_loss: float | None
    final_loss: float | None
    train: dict
    evaluation: dict | None = None
    eval_split: str | None = None
    priors: dict[str, float] | None = None
    threshold: float | None = None


def write_model_card(directory: Path, card: ModelCard) -> Path:
    """Writes ``directory/README.md``: data, backbone, training, scores, τ and intended use."""

    directory = Path(directory)
    config = json.loads((directory / CONFIG).read_text())
    model, store = config["model"], config["store"]
    state = (
        "not calibrated (0.5 is used)"
        if card.threshold is None
        else f"{card.threshold:.3f}, calibrated on the training clips"
    )
    loss = (
        f"{card.first_loss:.3f} → {card.final_loss:.3f}"
        if card.first_loss is not None and card.final_loss is not None
        else "–"
    )
    lines = [
        "# stg grounding model",
        "",
        f'A global-local spatio-temporal grounding model (Chen et al., CVPR 2024, "What, When, '
        f'and Where?") trained by stg {stg_cli.__version__} on narrated video features. Load it '
        'with `stg ground --checkpoint THIS_FOLDER` or `stg_cli.load_grounder("THIS_FOLDER")`.',
        "",
        "| | |",
        "|---|---|",
        f"| visual backbone | {store.get('backbone', '?')} (weights: {store.get('weights') or 'default'}) |",
        f"| text encoder | {store.get('text', '?')} (saved in `text_encoder/`: "
        f"{'yes' if (directory / 'text_encoder').is_dir() else 'no'}) |",
        f"| features | {store.get('fps', '?')} per second, grid "
        f"{'×'.join(str(side) for side in model.get('grid', ()))}, "
        f"visual {model.get('visual_dim')}-d, words {model.get('text_dim')}-d |",
        f"| model | d = {model.get('dim')}, U = {model.get('frames_u')}, T = {model.get('frames_t')}, "
        f"selection {model.get('select')}, local stack {model.get('attention')}, video centring "
        f"{'on' if model.get('center_video') else 'off'} |",
        f"| training | {card.steps} of {card.total_steps} steps, {card.samples} narrated clips, "
        f"batch {card.train.get('batch_size')}, lr {card.train.get('lr')}, loss "
        f"{card.train.get('loss')}, seed {card.train.get('seed')}; loss {loss} |",
        f"| detection threshold τ | {state} |",
        "",
        "## Scores",
        "",
    ]
    if card.evaluation:
        lines += [
            f"On `{card.eval_split}` at step {card.evaluation.get('step')} (`stg train --eval`), "
            "percent; the wrong- and distractor-query rows are controls (a model that grounds "
            "the query drops there), the prior rows need no model (a model close to one has not "
            "shown that it grounds anything):",
            "",
            "| metric | score |",
            "|---|---:|",
        ]
        for key, title in CARD_METRICS.items():
            value = card.evaluation.get(key)
            if value is not None:
                lines.append(f"| {title} | {value:.2f} |")
        uniform = card.evaluation.get("temporal_iou_uniform")
        if uniform is not None:
            lines.append(f"| prior, no model: uniform split, temporal IoU | {uniform:.2f} |")
        for prior, value in sorted((card.priors or {}).items()):
            lines.append(
                f"| prior, no model: {prior.replace('_', ' ')}, pointing given true timing | {value:.2f} |"
            )
    else:
        lines.append(
            "Not evaluated: train with `--eval SPLIT` to record scores here, or score "
            "its predictions with `stg score`."
        )
    lines += [
        "",
        "## Intended use",
        "",
        "Finding when and where free-text action queries happen in videos like its training "
        "data (same backbone and frame rate), for research on self-supervised grounding. The "
        "scores above hold for the data they were measured on only; scores on synthetic videos "
        "say nothing about real ones. Compare any score with the model-free priors "
        "(`stg score --videos`) before trusting it.",
        "",
    ]
    path = directory / "README.md"
    files.write_text(path, "\n".join(lines))
    return path


def save_export(
    model: GroundingModel, directory: Path, store_config: dict | object, text_encoder_dir: Path | None = None
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
