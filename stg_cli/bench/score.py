"""Scoring speed: ``stg score`` on a prediction set for every GroundingYouTube video.

The ground truth is the released GroundingYouTube annotation folder when it is found (the
``STG_GROUNDINGYOUTUBE`` environment variable, else ``../shared/data/groundingyoutube`` next to
the repository or the working folder); otherwise a generated one of the same size (250 videos
of 70 one-second boxes in runs of 1 to 8 seconds, seeded), and the row's shape says which.

Each timed call reads a combined predictions file (written once during setup) and computes every
GroundingYouTube metric: what ``stg score PRED --gt DIR --dataset groundingyoutube`` does after
loading the annotations. Variants: the oracle and the centre-point baseline of
``stg_cli.metrics.baselines``. The project's target is under 30 s per call on 2 CPU cores.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stg_cli.bench.common import Case, Variant
from stg_cli.metrics.annotations import FrameBox, GroundTruth, Segment, find_defects
from stg_cli.metrics.baselines import BASELINES, baseline_predictions, save_predictions
from stg_cli.metrics.predictions import load_predictions
from stg_cli.metrics.score import load_ground_truth, score

ENVIRONMENT_VARIABLE = "STG_GROUNDINGYOUTUBE"
VIDEOS, BOXES_PER_VIDEO, STEPS_PER_VIDEO = 250, 70, 9
TARGET_S = 30.0


def cases(quick: bool, device: torch.device) -> list[Case]:
    """One CPU case (scoring is NumPy and Python); none for other devices.

    ``quick`` keeps the problem: the full set is what the target is about.
    """
    if device.type != "cpu":
        return []
    folder = find_annotations()
    source = "released annotations" if folder is not None else "generated annotations"
    return [
        Case(
            op="score",
            shape=(f"GroundingYouTube {VIDEOS} videos, {source}, all metrics (target < {TARGET_S:g} s)"),
            device=str(device),
            variants=[Variant(kind, _setup(kind, folder)) for kind in BASELINES],
        )
    ]


def find_annotations() -> Path | None:
    """The GroundingYouTube annotation folder, or None when it is not found."""
    candidates = []
    if os.environ.get(ENVIRONMENT_VARIABLE):
        candidates.append(Path(os.environ[ENVIRONMENT_VARIABLE]))
    repository = Path(__file__).resolve().parents[2]
    for base in (repository, Path.cwd()):
        candidates.append(base.parent / "shared" / "data" / "groundingyoutube")
    for candidate in candidates:
        if (candidate / "GoundingYouTubeBox.json").is_file():
            return candidate
    return None


def generated_ground_truth(
    videos: int = VIDEOS, boxes_per_video: int = BOXES_PER_VIDEO, seed: int = 0
) -> GroundTruth:
    """A GroundingYouTube-sized ground truth: runs of 1..8 boxed seconds of random steps."""
    generator = np.random.default_rng(seed)
    boxes: dict[str, list[FrameBox]] = {}
    segments: dict[str, list[Segment]] = {}
    pools: dict[str, list[str]] = {}
    for index in range(videos):
        video = f"video{index:04d}"
        pool = [f"step {index % 40} {k}" for k in range(STEPS_PER_VIDEO)]
        second, frames, runs = 5, [], []
        while len(frames) < boxes_per_video:
            length = int(generator.integers(1, 9))
            label = pool[int(generator.integers(len(pool)))]
            runs.append(Segment(video, second, second + length - 1, label, len(runs)))
            for offset in range(length):
                x1, y1 = generator.uniform(0, 400), generator.uniform(0, 300)
                w, h = generator.uniform(40, 240), generator.uniform(40, 180)
                frames.append(FrameBox(second + offset, (x1, y1, x1 + w, y1 + h), label))
            second += length + int(generator.integers(1, 12))
        boxes[video], segments[video], pools[video] = frames, runs, pool
    sizes = {video: (640, 480) for video in boxes}
    return GroundTruth(
        boxes, segments, sizes, pools, find_defects(boxes, segments, sizes, "frames"), "frames"
    )


def _setup(kind: str, folder: Path | None) -> Callable[[], Callable[[], object] | str]:
    def setup() -> Callable[[], object]:
        if folder is not None:
            ground_truth = load_ground_truth([folder], "groundingyoutube")
        else:
            ground_truth = generated_ground_truth()
        workdir = tempfile.TemporaryDirectory(prefix="stg-bench-score-")
        path = save_predictions(
            baseline_predictions(ground_truth, kind), Path(workdir.name) / "predictions.json"
        )

        def call() -> object:
            _ = workdir  # keeps the folder alive as long as the call
            return score(load_predictions(path), ground_truth, "groundingyoutube")

        return call

    return setup
