"""Helpers of the grounding tests: a random-initialised export and generated videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SENTENCES = [
    "crack the egg into the bowl",
    "pour milk into the pan",
    "whisk the eggs with a fork",
    "cut the onion on the board",
] * 25


def make_export(directory: Path, seed: int = 0, save_text: bool = True, **model_options) -> Path:
    """A random-initialised tiny-backbone model exported to ``directory`` with its text encoder
    (``model_options``: further :class:`stg_cli.models.config.ModelConfig` fields)."""
    from stg_cli.backbones import load_visual, train_word2vec
    from stg_cli.models import GroundingModel
    from stg_cli.models.config import ModelConfig
    from stg_cli.models.export import save_export

    torch.manual_seed(seed)
    backbone = load_visual("tiny")
    text = train_word2vec(SENTENCES, dim=32, seed=seed)
    config = ModelConfig(
        visual_dim=backbone.spec.dim, text_dim=text.dim, dim=64, frames_u=8, frames_t=4, **model_options
    )
    model = GroundingModel(config)
    store = {
        "backbone": "tiny",
        "weights": None,
        "text": "word2vec",
        "grid": [7, 7],
        "visual_dim": backbone.spec.dim,
        "text_dim": text.dim,
        "fps": 1.0,
        "input_size": list(backbone.spec.input_size),
        "visual_fingerprint": backbone.fingerprint,
        "text_fingerprint": text.fingerprint,
    }
    save_export(model, directory, store)
    if save_text:
        text.save(directory / "text_encoder")
    return directory


def make_video(path: Path, width: int = 160, height: int = 120, seconds: float = 6.0, fps: int = 10) -> Path:
    """A video of a bright square moving over a dark gradient."""
    from stg_cli.video.write import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    count = max(int(round(seconds * fps)), 1)
    base = np.zeros((height, width, 3), dtype=np.uint8)
    base[..., 2] = np.linspace(20, 90, width, dtype=np.uint8)[None, :]
    size = max(min(width, height) // 5, 2)

    def frames():
        for index in range(count):
            frame = base.copy()
            x = int((width - size) * index / max(count - 1, 1))
            y = height // 3
            frame[y : y + size, x : x + size] = (240, 200, 40)
            yield frame

    return write_video(path, frames(), fps=fps)
