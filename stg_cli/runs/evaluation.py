"""Grounding a labelled split and scoring it: the rows of ``stg demo`` and ``stg train --eval``.

A labelled split is a folder with ``videos/`` and ``annotations/`` in the GroundingYouTube
layout (``GoundingYouTubeBox.json`` or ``box_anno.json``, ``ground_seg.json``, ``vid2step.json``,
optional ``id2wh_new.json``, optional ``seg.json`` for the temporal IoU and, from ``stg synth``,
optional ``distractors.json``), as ``stg synth`` writes its ``test/`` split. A model is
evaluated on it:

- untrimmed: ``stg ground`` with the split's query pools (``vid2step.json``) and the model's
  calibrated τ; scored with every GroundingYouTube metric and, when ``seg.json`` is there, the
  MiningYouTube temporal IoU with the same τ as the alignment's background score;
- given true timing: the same with ``--trimmed`` on ``ground_seg.json`` (only where is
  predicted); its pointing game is the spatial score the priors of
  :mod:`stg_cli.metrics.baselines` are compared with;
- the wrong-query controls (:func:`query_controls`): given true timing again, but each true
  segment is grounded with a query that is not its step, and the points are scored against the
  step's true box (the pointing game, no label required). ``pointing_wrong_query`` asks for
  another step of the same video (:func:`wrong_query_truth`); ``pointing_distractor_query``,
  where ``distractors.json`` is there, for the unnarrated action happening at the same time
  elsewhere in the frame (:func:`distractor_query_truth`). A model that grounds the query drops
  well below its true-timing pointing game; one that finds what moves does not.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from stg_cli.errors import UserError
from stg_cli.ground.output import write_combined
from stg_cli.ground.pipeline import Grounder, GroundSettings
from stg_cli.ground.queries import QuerySet, load_queries, unique
from stg_cli.metrics.annotations import Segment, load_distractors
from stg_cli.metrics.baselines import score_priors, uniform_temporal
from stg_cli.metrics.predictions import load_predictions
from stg_cli.metrics.score import load_ground_truth, score
from stg_cli.runs.grounding import ground_videos, load_truth_segments
from stg_cli.video_files import find_videos, video_paths

SPATIAL_METRICS = (
    "iou_point",
    "map@0.1",
    "map@0.2",
    "map@0.3",
    "map@0.4",
    "map@0.5",
    "map_mean",
    "pointing_game",
)
TEMPORAL_METRIC = "temporal_iou"
DISTRACTORS = "distractors.json"

#: a ground-truth segment with ``label``, ``start`` and ``end`` (inclusive seconds), as
#: :func:`stg_cli.runs.grounding.load_truth_segments` gives them
TruthSegmentT = TypeVar("TruthSegmentT")


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

    @property
    def has_distractors(self) -> bool:
        """Whether ``distractors.json`` (the concurrent distractor actions) is there."""
        return (self.annotations / DISTRACTORS).is_file()


def ground_split(
    grounder, split: LabelledSplit, out: Path, settings, viz_first: bool = False
) -> tuple[list[str], float]:
    """Grounds every video of ``split`` with ``grounder`` into ``out``.

    ``grounder``: a loaded :class:`stg_cli.ground.pipeline.Grounder`; ``settings``: its
    :class:`stg_cli.ground.pipeline.GroundSettings` (``trimmed`` takes the segments of
    ``ground_seg.json``); ``viz_first`` also draws the first video.

    Returns:
        (the ids of videos that failed, the detection threshold τ used).
    """

    inputs, _ = find_videos([split.videos])
    if not inputs:
        raise UserError(f"no video in {split.videos}")
    query_set = load_queries(split.annotations / "vid2step.json")
    truth = load_truth_segments(split.annotations / "ground_seg.json")
    results = []
    for chunk, viz in ((inputs[:1], viz_first), (inputs[1:], False)):
        results += ground_videos(
            grounder, chunk, query_set, replace(settings, viz=viz), out, ground_truth=truth
        )[0]
    write_combined({r.video_id: r.prediction for r in results if r.prediction is not None}, out)
    return [result.video_id for result in results if result.error], grounder.threshold(settings)


def score_split(predictions: Path, split: LabelledSplit, tau: float | None) -> dict[str, float | None]:
    """:data:`SPATIAL_METRICS` of ``predictions`` (a ``predictions.json``) on ``split``, and
    with ``tau`` given and ``seg.json`` there the temporal IoU (else None)."""

    loaded = load_predictions(predictions)
    spatial = score(loaded, load_ground_truth([split.annotations], "synth"), "synth").metrics
    metrics: dict[str, float | None] = {key: spatial.get(key) for key in SPATIAL_METRICS}
    metrics[TEMPORAL_METRIC] = None
    if tau is not None and split.has_temporal:
        temporal = load_ground_truth([split.annotations], "miningyoutube")
        metrics[TEMPORAL_METRIC] = score(loaded, temporal, "miningyoutube", tau=tau).metrics["iou"]
    return metrics


def split_priors(split: LabelledSplit, grid: tuple[int, int] = (7, 7), seed: int = 0):
    """The model-free priors of :mod:`stg_cli.metrics.baselines` on ``split``, its videos read
    for motion and centred energy (``grid``: the model's): a
    :class:`stg_cli.metrics.baselines.PriorScores`."""

    ground_truth = load_ground_truth([split.annotations], "synth")
    return score_priors(ground_truth, "synth", video_paths(split.videos), grid, seed)


def wrong_query_truth(truth: Mapping[str, Sequence[TruthSegmentT]]) -> dict[str, list[TruthSegmentT]]:
    """The true segments of each video relabelled with another step of the same video.

    A video's distinct steps are taken in order of first appearance (segments by start, then
    end); each segment is labelled with the step after its own, the last one with the first.
    A video with a single distinct step has no other step to ask for: it is left out, so it
    contributes no frame to the control.

    Example: segments a [0, 3], b [5, 8], a [10, 12], c [14, 15] → b, c, b, a.
    """
    relabelled = {}
    for video, segments in truth.items():
        ordered = sorted(segments, key=lambda segment: (segment.start, segment.end))
        steps = list(dict.fromkeys(segment.label for segment in ordered))
        if len(steps) < 2:
            continue
        following = {step: steps[(index + 1) % len(steps)] for index, step in enumerate(steps)}
        relabelled[video] = [replace(segment, label=following[segment.label]) for segment in ordered]
    return relabelled


def distractor_query_truth(
    truth: Mapping[str, Sequence[TruthSegmentT]], distractors: Mapping[str, Mapping[int, str]]
) -> dict[str, list[TruthSegmentT]]:
    """The true segments split into runs of one concurrent distractor, labelled with it.

    ``distractors``: video → whole second → the step of the first distractor listed at that
    second (see :func:`distractor_labels`). Each true segment [start, end] (inclusive seconds)
    is cut into maximal runs of consecutive seconds with the same distractor step; a second
    without a distractor, or whose distractor is the segment's own step, belongs to no run.
    Videos without a run are left out.

    Example: segment "cut onion" [3, 7] with seconds 3-4 "stir pot", 5 none, 6-7 "stir pot" →
    "stir pot" [3, 4] and [6, 7].
    """
    relabelled = {}
    for video, segments in truth.items():
        labels = distractors.get(video, {})
        runs = []
        for segment in sorted(segments, key=lambda segment: (segment.start, segment.end)):
            seconds = range(math.ceil(segment.start), math.floor(segment.end) + 1)
            steps = [labels.get(second) for second in seconds]
            steps = [None if step == segment.label else step for step in steps]
            for step, group in itertools.groupby(zip(seconds, steps), key=lambda item: item[1]):
                if step is not None:
                    run = [second for second, _ in group]
                    runs.append(replace(segment, label=step, start=float(run[0]), end=float(run[-1])))
        if runs:
            relabelled[video] = runs
    return relabelled


def distractor_labels(path: Path | str) -> dict[str, dict[int, str]]:
    """Video → second → the step of the first distractor listed there, from
    ``distractors.json`` (seconds listing none are left out)."""

    return {
        video: {second: entries[0].label for second, entries in seconds.items() if entries}
        for video, seconds in load_distractors(path).items()
    }


def ground_control(
    grounder, split: LabelledSplit, out: Path, settings, truth: Mapping[str, Sequence]
) -> tuple[float | None, list[str]]:
    """Grounds the videos of ``truth`` given its segments (trimmed, each segment's label as the
    query, added to the video's pool) into ``out`` and scores the points against the true boxes.

    Returns:
        (the pointing game in percent over the annotated seconds inside ``truth``'s segments,
        None when there is none; the ids of videos that failed).
    """

    inputs = [video for video in find_videos([split.videos])[0] if truth.get(video.video_id)]
    if not inputs:
        return None, []
    pools = load_queries(split.annotations / "vid2step.json")
    query_set = QuerySet(
        source=pools.source,
        per_video={
            video.video_id: tuple(
                unique(
                    [
                        *(pools.shared or pools.per_video.get(video.video_id, ())),
                        *(segment.label for segment in truth[video.video_id]),
                    ]
                )
            )
            for video in inputs
        },
    )
    results, _ = ground_videos(
        grounder, inputs, query_set, replace(settings, trimmed=True, viz=False), out, ground_truth=dict(truth)
    )
    failed = [result.video_id for result in results if result.error]
    if len(failed) == len(inputs):
        return None, failed
    return score_control(out / "predictions.json", split, truth), failed


def score_control(predictions: Path, split: LabelledSplit, truth: Mapping[str, Sequence]) -> float | None:
    """The pointing game (percent) of ``predictions`` over the annotated seconds of ``split``
    inside ``truth``'s segments, against the true boxes and without requiring the label; None
    when no annotated second is inside them."""

    ground_truth = load_ground_truth([split.annotations], "synth")
    segments = {
        video: [
            Segment(video, int(item.start), int(item.end), item.label, index)
            for index, item in enumerate(items)
        ]
        for video, items in truth.items()
    }
    report = score(
        load_predictions(predictions), replace(ground_truth, segments=segments), "synth", require_label=False
    )
    return report.metrics["pointing_game"] if report.counts["pointing_frames"] else None


def query_controls(
    grounder, split: LabelledSplit, out: Path, settings
) -> tuple[dict[str, float | None], list[str]]:
    """The wrong-query controls of ``grounder`` on ``split`` (see the module docstring).

    ``settings``: the :class:`stg_cli.ground.pipeline.GroundSettings` of the true-timing run
    (trimmed is set here). Predictions go to ``out/wrong-query`` and ``out/distractor-query``.

    Returns:
        ({``pointing_wrong_query``: percent or None, and where the split has
        ``distractors.json`` ``pointing_distractor_query``}, the ids of videos that failed).
    """

    truth = load_truth_segments(split.annotations / "ground_seg.json")
    controls = {"pointing_wrong_query": ("wrong-query", wrong_query_truth(truth))}
    if split.has_distractors:
        labels = distractor_labels(split.annotations / DISTRACTORS)
        controls["pointing_distractor_query"] = ("distractor-query", distractor_query_truth(truth, labels))
    metrics: dict[str, float | None] = {}
    failed: list[str] = []
    for name, (folder, relabelled) in controls.items():
        metrics[name], more = ground_control(grounder, split, out / folder, settings, relabelled)
        failed += more
    return metrics, failed


def uniform_split_iou(predictions: Path, split: LabelledSplit) -> float:
    """Temporal IoU of the uniform split (each video's steps in order, evenly over its
    length: :func:`stg_cli.metrics.baselines.uniform_temporal`) on the frames of
    ``predictions``: the prior a model's temporal IoU is compared with."""

    truth = load_ground_truth([split.annotations], "miningyoutube")
    times = {video: prediction.times for video, prediction in load_predictions(predictions).items()}
    return uniform_temporal(truth, times)["iou"]


def evaluate_export(
    export: Path,
    split: LabelledSplit,
    out: Path,
    heatmap: str = "auto",
    device: str = "cpu",
    controls: bool = True,
) -> dict[str, float | None]:
    """The model's scores on ``split``: the untrimmed metrics, ``pointing_true_timing``, with
    ``controls`` the wrong-query controls (``pointing_wrong_query`` and, where the split has
    distractors, ``pointing_distractor_query``; see :func:`query_controls`), the uniform split's
    temporal IoU on the same frames (``temporal_iou_uniform``, a prior, where the split has
    ``seg.json``), ``tau`` and
    ``failed`` (videos that could not be grounded); predictions go to ``out/untrimmed``,
    ``out/true-timing``, ``out/wrong-query`` and ``out/distractor-query``."""

    grounder = Grounder(export, device=device)
    failed, tau = ground_split(grounder, split, out / "untrimmed", GroundSettings(heatmap=heatmap))
    metrics = score_split(out / "untrimmed" / "predictions.json", split, tau)
    if split.has_temporal:
        metrics["temporal_iou_uniform"] = uniform_split_iou(out / "untrimmed" / "predictions.json", split)
    trimmed_settings = GroundSettings(heatmap=heatmap, trimmed=True)
    more, _ = ground_split(grounder, split, out / "true-timing", trimmed_settings)
    trimmed = score_split(out / "true-timing" / "predictions.json", split, None)
    metrics["pointing_true_timing"] = trimmed["pointing_game"]
    if controls:
        control_metrics, control_failed = query_controls(grounder, split, out, trimmed_settings)
        metrics.update(control_metrics)
        more += control_failed
    metrics["tau"] = tau
    metrics["failed"] = len(set(failed + more))
    return metrics
