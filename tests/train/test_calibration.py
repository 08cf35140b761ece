"""The calibrated detection threshold: its definition, and that runs ship it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.stores import make_store
from stg_cli.models import GroundingModel, ModelConfig
from stg_cli.models.export import load_export
from stg_cli.train import TrainConfig, initial_export, train
from stg_cli.train.calibration import calibrate_threshold
from stg_cli.train.data import ClipDataset


def _brute_force(model: GroundingModel, dataset: ClipDataset, chunk: int) -> float:
    """The module docstring's definition, one frame at a time."""
    positives, negatives = [], []
    ids = list(range(len(dataset)))
    for begin in range(0, len(ids), chunk):
        part = ids[begin : begin + chunk]
        batch = dataset.batch(part)
        with torch.no_grad():
            frames = model.frame_embeddings(batch.global_feats)
            captions = model.sentence_embeddings(batch.sentence)
        for b, clip in enumerate(part):
            first, last = batch.boundary[b].tolist()
            for u in range(frames.shape[1]):
                if not batch.frame_mask[b, u] or not first <= u <= last:
                    continue
                positives.append(float(frames[b, u] @ captions[b]))
                for c, other in enumerate(part):
                    if dataset.owners[other][0] != dataset.owners[clip][0]:
                        negatives.append(float(frames[b, u] @ captions[c]))
    return (np.mean(positives) + np.mean(negatives)) / 2


def test_threshold_is_the_midpoint_of_positive_and_negative_cosines():
    store = make_store(videos=3, captions=4)
    torch.manual_seed(0)
    model = GroundingModel(
        ModelConfig(visual_dim=12, text_dim=8, dim=16, grid=(2, 2), frames_u=6, frames_t=3)
    )
    dataset = ClipDataset(store, frames_u=6)
    assert len(dataset) == 12
    assert calibrate_threshold(model, dataset, chunk=5) == pytest.approx(
        _brute_force(model, dataset, chunk=5), abs=1e-6
    )


def test_a_trained_run_ships_its_threshold(tmp_path):
    store = make_store(videos=4)
    model_options = {"dim": 16, "frames_u": 6, "frames_t": 3}
    train(
        store,
        tmp_path / "run",
        model_options,
        TrainConfig(steps=30, batch_size=8, local_chunk=4, lr=3e-3, log_every=10, checkpoint_every=100),
    )
    model = load_export(tmp_path / "run").model
    tau = model.calibrated_threshold
    untrained = load_export(
        initial_export(store, tmp_path / "untrained", model_options, TrainConfig(batch_size=8))
    ).model.calibrated_threshold
    # training on the fake concepts lifts the positives above the negatives (about 0); at
    # initialisation both are about 0
    assert abs(untrained) < 0.02 and 0.03 < tau < 1.0
    dataset = ClipDataset(store, frames_u=6, center_video=model.config.center_video)
    assert calibrate_threshold(model, dataset) == pytest.approx(tau, abs=1e-6)
