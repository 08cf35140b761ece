"""Frame-level grounding metrics: pointing game, IoU+Point, spatial accuracy and spatial AP,
and the predicted tubes that video mAP ranks.

Frames are the annotated seconds (1 fps). A ground-truth frame is a ``FrameBox`` (second, box,
step label); the prediction's answer for that second is a ``FramePrediction`` (or None when the
prediction has no frame there, which counts as a miss). Labels are compared as given; the
scorer maps predicted labels onto the annotation's spelling first.

Definitions and defaults:

- **pointing game** (trimmed, the ground-truth query given): over the ground-truth frames it is
  handed, a hit when the predicted point lies inside the box, edges included, widened by
  ``tolerance`` pixels (0; the ±15 px variant uses 15). ``require_label=False``: the frame's
  predicted label is not checked (with True a frame labelled otherwise is a miss).
  Accuracy = hits / frames.
- **IoU+Point** (untrimmed, the query pool given), per video:
  score = |correct| / |{ground-truth foreground seconds} ∪ {predicted foreground seconds}|.
  The ground-truth foreground (:func:`ground_truth_foreground`) is every second the ground truth
  says something about: the seconds with a box and the whole seconds inside a segment
  (start ≤ s ≤ end). At a second with a box, a prediction is correct when its label is the box's
  step and its point lies inside the box; at a segment second without a box, when its label is
  the step of a segment holding that second: the point is neither a hit nor a miss there, since
  there is nothing to judge it against. (On GroundingYouTube 5,013 of the 22,329 seconds inside
  ``ground_seg.json`` segments have no box; counting only box seconds as foreground made a
  prediction that is right wherever the ground truth says anything score 76.6, not 100.)
- **spatial accuracy** (V-HICO "meanAP"): a ground-truth frame is a hit when the predicted box
  has IoU > ``threshold`` (0.3, strictly greater) with it, under the ``"pixel"`` box convention;
  a frame without a predicted box is a miss. **Spatial AP** per class ranks the frames that
  have a predicted box by their score; the positives are all ground-truth frames of the class;
  all-point interpolation by default.
- **predicted tubes**: each non-background segment with its label and score; its regions are
  those of the frames the prediction gives for the whole seconds ceil(start) … floor(end) whose
  label equals the segment's: their masks (read from the heatmaps file's cells by a
  :class:`MaskRule`, in the prediction's frame) or, as an option, their boxes (frames without a
  box are left out).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stg_cli.metrics.annotations import BACKGROUND, FrameBox, Segment
from stg_cli.metrics.ap import INTERPOLATIONS, average_precision
from stg_cli.metrics.geometry import BOX_CONVENTIONS, Region, box_iou, check_choice, point_in_box
from stg_cli.metrics.heatmaps import normalize_cells, threshold_masks
from stg_cli.metrics.predictions import VideoPrediction
from stg_cli.metrics.tubes import TubeDetection


@dataclass(frozen=True)
class FramePrediction:
    """What a prediction says about one second: its label, score, point and box (or None)."""

    label: str
    score: float
    point: tuple[float, float] | None
    box: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class Rate:
    """``hits`` out of ``total``; ``percent`` is 0 when ``total`` is 0."""

    hits: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.hits / self.total if self.total else 0.0

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.hits + other.hits, self.total + other.total)


@dataclass(frozen=True)
class ForegroundSecond:
    """What the ground truth says about one foreground second: the step labels a prediction may
    give there and the box its point must hit (None: a segment second without a box)."""

    labels: frozenset[str]
    box: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class SpatialRecord:
    """One ground-truth frame for spatial AP: its class, the predicted box's score (None when
    there is no box) and whether the box is a hit."""

    label: str
    score: float | None
    hit: bool


def frame_predictions(
    prediction: VideoPrediction | None, seconds: Sequence[int]
) -> list[FramePrediction | None]:
    """The prediction's frame for each second (None where it has none or no prediction)."""
    if prediction is None:
        return [None] * len(seconds)
    indices = prediction.frame_indices(np.asarray(seconds, dtype=np.float64))
    return [None if index < 0 else _frame(prediction, int(index)) for index in indices]


def foreground_predictions(prediction: VideoPrediction | None) -> dict[int, FramePrediction]:
    """Second → frame for every whole second whose frame is not background."""
    if prediction is None:
        return {}
    return {second: _frame(prediction, index) for second, index in prediction.foreground_seconds().items()}


def pointing_game(
    ground_truth: Sequence[FrameBox],
    predicted: Sequence[FramePrediction | None],
    tolerance: float = 0.0,
    require_label: bool = False,
) -> Rate:
    """Hits of the predicted points in the ground-truth boxes, frame by frame.

    Example: boxes [0,0,9,9] and [0,0,9,9]; points (9, 9) and (12, 5): exact 1/2 (12 > 9),
    with tolerance 15 2/2 (12 <= 9 + 15).
    """
    _same_length(ground_truth, predicted)
    hits = sum(
        _points_in(frame, guess, tolerance, require_label) for frame, guess in zip(ground_truth, predicted)
    )
    return Rate(hits, len(ground_truth))


def ground_truth_foreground(
    frames: Sequence[FrameBox], segments: Sequence[Segment], skipped: Collection[int] = ()
) -> dict[int, ForegroundSecond]:
    """Second → what the ground truth says there, for every second with a box or inside a
    segment (start ≤ s ≤ end), except the ``skipped`` seconds (degenerate boxes).

    A box's label is its step, else the steps of the segments holding its second; a segment
    second without a box takes the steps of every segment holding it.
    """
    holding: dict[int, set[str]] = {}
    for segment in segments:
        if segment.label is None or segment.label == BACKGROUND:
            continue
        for second in range(math.ceil(segment.start), math.floor(segment.end) + 1):
            holding.setdefault(second, set()).add(segment.label)
    truth = {
        second: ForegroundSecond(frozenset(labels), None)
        for second, labels in holding.items()
        if second not in skipped
    }
    for frame in frames:
        if frame.second in skipped or frame.label == BACKGROUND:
            continue
        labels = {frame.label} if frame.label is not None else holding.get(frame.second, set())
        if labels:
            truth[frame.second] = ForegroundSecond(frozenset(labels), tuple(frame.box))
    return dict(sorted(truth.items()))


def iou_point(
    truth: Mapping[int, ForegroundSecond],
    predicted_foreground: Mapping[int, FramePrediction],
    tolerance: float = 0.0,
) -> Rate:
    """IoU+Point of one video: (correct seconds, seconds in either foreground).

    ``truth`` is the ground-truth foreground (:func:`ground_truth_foreground`) and
    ``predicted_foreground`` the seconds the prediction labels with a step.
    """
    correct = sum(
        1
        for second, guess in predicted_foreground.items()
        if second in truth and _correct_foreground(truth[second], guess, tolerance)
    )
    return Rate(correct, len(truth.keys() | predicted_foreground.keys()))


def spatial_records(
    ground_truth: Sequence[FrameBox],
    predicted: Sequence[FramePrediction | None],
    threshold: float = 0.3,
    convention: str = "pixel",
    require_label: bool = False,
    unlabeled: str = "unlabeled",
) -> list[SpatialRecord]:
    """One record per ground-truth frame: hit when the predicted box has IoU > ``threshold``."""
    _same_length(ground_truth, predicted)
    check_choice(convention, BOX_CONVENTIONS, "convention")
    records = []
    for frame, guess in zip(ground_truth, predicted):
        label = frame.label if frame.label is not None else unlabeled
        if guess is None or guess.box is None or (require_label and guess.label != frame.label):
            records.append(SpatialRecord(label, None, False))
            continue
        hit = bool(box_iou(guess.box, frame.box, convention) > threshold)
        records.append(SpatialRecord(label, guess.score, hit))
    return records


def spatial_accuracy(records: Sequence[SpatialRecord]) -> Rate:
    """Fraction of ground-truth frames whose predicted box is a hit."""
    return Rate(sum(bool(record.hit) for record in records), len(records))


def spatial_ap(records: Sequence[SpatialRecord], interpolation: str = "all_point") -> dict[str, float]:
    """AP per class (as a fraction) over score-ranked frames; every class of ``records``.

    Example: one class, frames scored .9 (hit), .8 (miss), .7 (no box): precision 1, 1/2 at
    recall 1/3, 1/3; all-point AP = 1/3.
    """
    check_choice(interpolation, INTERPOLATIONS, "interpolation")
    by_class: dict[str, list[SpatialRecord]] = {}
    for record in records:
        by_class.setdefault(record.label, []).append(record)
    ap = {}
    for label in sorted(by_class):
        ranked = [record for record in by_class[label] if record.score is not None]
        ap[label] = average_precision(
            [record.score for record in ranked],
            [record.hit for record in ranked],
            len(by_class[label]),
            interpolation,
        )
    return ap


@dataclass(frozen=True)
class MaskRule:
    """How a frame's mask is read from its cells: the cells made a probability over the frame
    (:func:`stg_cli.metrics.heatmaps.normalize_cells`), divided by ``frames_per_unit`` (1: a
    probability per frame, stg's scale; 16: the mass of a 16-frame clip whose frames share it
    equally, the authors' scale), upsampled to the frame and kept where ≥ ``threshold``."""

    threshold: float
    frames_per_unit: int = 1

    def mask(self, cells: np.ndarray, width: int, height: int) -> np.ndarray:
        """[gh, gw] cells → bool [height, width]."""
        probabilities = normalize_cells(np.asarray(cells)[None]) / self.frames_per_unit
        return threshold_masks(probabilities, width, height, self.threshold)[0]


def predicted_tubes(prediction: VideoPrediction | None, masks: MaskRule | None = None) -> list[TubeDetection]:
    """The prediction's non-background segments as tubes (see the module docstring): the
    frames' boxes, or with ``masks`` their masks in the prediction's frame (frames without a
    heatmaps row have none). Raises UserError when ``masks`` is given and the heatmaps file is
    missing or bad (a prediction without a heatmaps file has no masks: check ``heatmaps``)."""
    if prediction is None:
        return []
    cells = prediction.cells() if masks is not None else None
    cache: dict[int, np.ndarray] = {}
    tubes = []
    for segment in prediction.segments:
        if segment.label == BACKGROUND:
            continue
        seconds = np.arange(math.ceil(segment.start), math.floor(segment.end) + 1)
        indices = prediction.frame_indices(seconds)
        rows = cells.rows(prediction.times_at(indices)) if cells is not None else indices
        regions: dict[int, Region] = {}
        for second, index, row in zip(seconds, indices, rows):
            if index < 0 or prediction.labels[index] != segment.label:
                continue
            if cells is not None:
                if row >= 0:
                    if row not in cache:
                        cache[row] = masks.mask(cells.cells[row], prediction.width, prediction.height)
                    regions[int(second)] = cache[row]
                continue
            box = prediction.boxes[index]
            if not np.isnan(box[0]):
                regions[int(second)] = tuple(float(v) for v in box)
        tubes.append(TubeDetection(prediction.video, segment.label, regions, segment.score))
    return tubes


def _frame(prediction: VideoPrediction, index: int) -> FramePrediction:
    point, box = prediction.points[index], prediction.boxes[index]
    return FramePrediction(
        label=prediction.labels[index],
        score=float(prediction.scores[index]),
        point=None if np.isnan(point[0]) else (float(point[0]), float(point[1])),
        box=None if np.isnan(box[0]) else tuple(float(v) for v in box),
    )


def _correct_foreground(truth: ForegroundSecond, guess: FramePrediction, tolerance: float) -> bool:
    if guess.label not in truth.labels:
        return False
    if truth.box is None:
        return True
    return guess.point is not None and point_in_box(guess.point, truth.box, tolerance)


def _points_in(frame: FrameBox, guess: FramePrediction | None, tolerance: float, require_label: bool) -> bool:
    if guess is None or guess.point is None:
        return False
    if require_label and guess.label != frame.label:
        return False
    return point_in_box(guess.point, frame.box, tolerance)


def _same_length(ground_truth: Sequence, predicted: Sequence) -> None:
    if len(ground_truth) != len(predicted):
        raise ValueError(
            f"ground_truth and predicted must have equal lengths, got {len(ground_truth)} "
            f"and {len(predicted)}"
        )
