"""Grounding a labelled split and scoring it: the rows of ``stg demo`` and ``stg train --eval``.

A labelled split is a folder with ``videos/`` and ``annotations/`` in the GroundingYouTube
layout (``GoundingYouTubeBox.json`` or ``box_anno.json``, ``ground_seg.json``, ``vid2step.json``,
optional ``id2wh_new.json``, and optional ``seg.json`` for the temporal IoU), as ``stg synth``
writes its ``test/`` split. A model is evaluated twice on it:

- untrimmed: ``stg ground`` with the split's query pools (``vid2step.json``) and the model's
  calibrated τ; scored with every GroundingYouTube metric and, when ``seg.json`` is there, the
  MiningYouTube temporal IoU with the same τ as the alignment's background score;
- given true timing: the same with ``--trimmed`` on ``ground_seg.json`` (only where is
  predicted); its pointing game is the spatial score the centre-point prior is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from stg_cli.errors import UserError

SPATIAL_METRICS = (
    "iou_point", "map@0.1", "map@0.2", "map@0.3", "map@0.4", "map@0.5", "map_mean",
    "pointing_game",
)
TEMPORAL_METRIC = "temporal_iou"


@dataclass(frozen=True)
class LabelledSplit:
    """The videos and the annotations folder of a labelled split."""

    videos: Path
    annotations: Path

    @classmethod
    def find(cls, path: Path | str) -> LabelledSplit:
        """The split in ``path`` (a folder with ``videos/`` and ``annotations/``).

        Raises:
            UserError: when either folder or ``vid2step.json`` / ``ground_seg.json`` is missing.
        """
        path = Path(path)
        split = cls(path / "videos", path / "annotations")
        for folder in (split.videos, split.annotations):
            if not folder.is_dir():
                raise UserError(f"{path} is not a labelled split: {folder} is not a folder")
        for name in ("vid2step.json", "ground_seg.json"):
            if not (split.annotations / name).is_file():
                raise UserError(f"{path} is not a labelled split: {split.annotations / name} is missing")
        return split

    @property
    def has_temporal(self) -> bool:
        """Whether ``seg.json`` (the temporal IoU's ground truth) is there."""
        return (self.annotations / "seg.json").is_file()


def ground_split(grounder, split: LabelledSplit, out: Path, settings,
                 viz_first: bool = False) -> tuple[list[str], float]:
    """Grounds every video of ``split`` with ``grounder`` into ``out``.

    ``grounder``: a loaded :class:`stg_cli.ground.pipeline.Grounder`; ``settings``: its
    :class:`stg_cli.ground.pipeline.GroundSettings` (``trimmed`` takes the segments of
    ``ground_seg.json``); ``viz_first`` also draws the first video.

    Returns:
        (the ids of videos that failed, the detection threshold τ used).
    """
    from stg_cli.ground.output import write_combined
    from stg_cli.ground.pipeline import find_videos, ground_videos, load_truth_segments
    from stg_cli.ground.queries import load_queries

    inputs, _ = find_videos([split.videos])
    if not inputs:
        raise UserError(f"no video in {split.videos}")
    query_set = load_queries(split.annotations / "vid2step.json")
    truth = load_truth_segments(split.annotations / "ground_seg.json")
    results = []
    for chunk, viz in ((inputs[:1], viz_first), (inputs[1:], False)):
        results += ground_videos(grounder, chunk, query_set, replace(settings, viz=viz), out,
                                 ground_truth=truth)[0]
    write_combined({r.video_id: r.prediction for r in results if r.prediction is not None}, out)
    return [result.video_id for result in results if result.error], grounder.threshold(settings)


def score_split(predictions: Path, split: LabelledSplit, tau: float | None) -> dict[str, float | None]:
    """:data:`SPATIAL_METRICS` of ``predictions`` (a ``predictions.json``) on ``split``, and
    with ``tau`` given and ``seg.json`` there the temporal IoU (else None)."""
    from stg_cli.metrics.predictions import load_predictions
    from stg_cli.metrics.score import load_ground_truth, score

    loaded = load_predictions(predictions)
    spatial = score(loaded, load_ground_truth([split.annotations], "synth"), "synth").metrics
    metrics: dict[str, float | None] = {key: spatial.get(key) for key in SPATIAL_METRICS}
    metrics[TEMPORAL_METRIC] = None
    if tau is not None and split.has_temporal:
        temporal = load_ground_truth([split.annotations], "miningyoutube")
        metrics[TEMPORAL_METRIC] = score(loaded, temporal, "miningyoutube", tau=tau).metrics["iou"]
    return metrics


def evaluate_export(export: Path, split: LabelledSplit, out: Path, heatmap: str = "global",
                    device: str = "cpu") -> dict[str, float | None]:
    """The model's scores on ``split``: the untrimmed metrics, ``pointing_true_timing``, ``tau``
    and ``failed`` (videos that could not be grounded); predictions go to ``out/untrimmed`` and
    ``out/true-timing``."""
    from stg_cli.ground.pipeline import GroundSettings, Grounder

    grounder = Grounder(export, device=device)
    failed, tau = ground_split(grounder, split, out / "untrimmed", GroundSettings(heatmap=heatmap))
    metrics = score_split(out / "untrimmed" / "predictions.json", split, tau)
    more, _ = ground_split(grounder, split, out / "true-timing",
                           GroundSettings(heatmap=heatmap, trimmed=True))
    trimmed = score_split(out / "true-timing" / "predictions.json", split, None)
    metrics["pointing_true_timing"] = trimmed["pointing_game"]
    metrics["tau"] = tau
    metrics["failed"] = len(set(failed + more))
    return metrics
