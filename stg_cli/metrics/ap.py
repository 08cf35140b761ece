"""Average precision of ranked detections, and ActivityNet-style temporal detection AP.

Interpolations:

- ``"all_point"`` (default): PASCAL VOC 2010+ — precision is replaced by its running maximum
  from the right (the interpolated envelope) and summed over every change of recall;
- ``"trapezoid"``: the trapezoidal area under the raw precision/recall points, starting from
  (recall 0, first precision).

Detections are ranked by descending score; ties keep their input order (a stable sort).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stg_cli.metrics.geometry import (
    SEGMENT_CONVENTIONS,
    as_segment,
    check_choice,
    check_unit_interval,
    segment_iou,
)

INTERPOLATIONS = ("all_point", "trapezoid")


@dataclass(frozen=True)
class ScoredSegment:
    """A predicted segment of one video: ``segment`` is [start, end] in seconds."""

    video: str
    segment: tuple[float, float]
    score: float


def ap_from_precision_recall(
    precision: Sequence[float], recall: Sequence[float], interpolation: str = "all_point"
) -> float:
    """AP from precision and recall at each rank (equal-length 1-D sequences, recall non-decreasing).

    P=[1, 1, .5, .667], R=[0, .5, .5, 1] gives 0.8333 under "all_point". Empty input gives 0.
    """
    check_choice(interpolation, INTERPOLATIONS, "interpolation")
    precision_array = np.asarray(precision, dtype=np.float64)
    recall_array = np.asarray(recall, dtype=np.float64)
    if precision_array.ndim != 1 or precision_array.shape != recall_array.shape:
        raise ValueError(
            "precision and recall must be 1-D of equal length, got shapes "
            f"{precision_array.shape} and {recall_array.shape}"
        )
    if precision_array.size == 0:
        return 0.0
    if not (np.all(np.isfinite(precision_array)) and np.all(np.isfinite(recall_array))):
        raise ValueError("precision and recall must be finite")
    if np.any(np.diff(recall_array) < 0):
        raise ValueError("recall must be non-decreasing along the ranking")
    if interpolation == "trapezoid":
        recall_points = np.concatenate(([0.0], recall_array))
        precision_points = np.concatenate(([precision_array[0]], precision_array))
        return float(np.sum(np.diff(recall_points) * (precision_points[1:] + precision_points[:-1]) / 2))
    recall_points = np.concatenate(([0.0], recall_array, [1.0]))
    envelope = np.concatenate(([0.0], precision_array, [0.0]))
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]
    steps = np.flatnonzero(recall_points[1:] != recall_points[:-1]) + 1
    return float(np.sum((recall_points[steps] - recall_points[steps - 1]) * envelope[steps]))


def average_precision(
    scores: Sequence[float], hits: Sequence[bool], num_positives: int, interpolation: str = "all_point"
) -> float:
    """AP of detections with the given scores, ``hits[i]`` True when detection i matched a positive.

    ``num_positives`` is the number of ground-truth positives (missed ones included). No
    detections give 0; so does ``num_positives == 0`` (then every hit is an error): callers that
    average over classes leave such classes out.
    """
    check_choice(interpolation, INTERPOLATIONS, "interpolation")
    score_array = np.asarray(scores, dtype=np.float64)
    hit_array = np.asarray(hits)
    if score_array.ndim != 1 or score_array.shape != hit_array.shape:
        raise ValueError(
            "scores and hits must be 1-D of equal length, got shapes "
            f"{score_array.shape} and {hit_array.shape}"
        )
    if hit_array.size and not np.all((hit_array == 0) | (hit_array == 1)):
        raise ValueError("hits must be booleans (or 0/1)")
    if not np.all(np.isfinite(score_array)):
        raise ValueError("scores must be finite")
    if (
        isinstance(num_positives, bool)
        or not isinstance(num_positives, numbers.Integral)
        or num_positives < 0
    ):
        raise ValueError(f"num_positives must be an integer >= 0, got {num_positives!r}")
    true_positives = int(np.count_nonzero(hit_array))
    if true_positives > num_positives:
        raise ValueError(f"hits has {true_positives} matches but num_positives is {num_positives}")
    if score_array.size == 0 or num_positives == 0:
        return 0.0
    order = np.argsort(-score_array, kind="stable")
    cumulative_hits = np.cumsum(hit_array[order].astype(np.float64))
    precision = cumulative_hits / np.arange(1, order.size + 1)
    recall = cumulative_hits / num_positives
    return ap_from_precision_recall(precision, recall, interpolation)


def temporal_detection_ap(
    ground_truth: Mapping[str, Sequence[Sequence[float]]],
    detections: Sequence[ScoredSegment],
    tiou_threshold: float,
    convention: str = "continuous",
) -> float:
    """ActivityNet temporal detection AP of one class at a tIoU threshold.

    ``ground_truth`` maps a video id to its [start, end] segments. Detections are taken by
    descending score; each matches the highest-tIoU ground-truth segment of its video that is
    still unmatched and has tIoU >= ``tiou_threshold``, else it is a false positive. AP is
    all-point interpolated over all ground-truth segments.
    """
    check_choice(convention, SEGMENT_CONVENTIONS, "convention")
    threshold = check_unit_interval(tiou_threshold, "tiou_threshold")
    segments = {
        video: [as_segment(segment, f"ground_truth[{video!r}]") for segment in video_segments]
        for video, video_segments in ground_truth.items()
    }
    matched = {video: np.zeros(len(video_segments), dtype=bool) for video, video_segments in segments.items()}
    ranked = sorted(detections, key=lambda detection: -detection.score)
    hits = []
    for detection in ranked:
        candidates = segments.get(detection.video, [])
        overlaps = np.array([segment_iou(detection.segment, gt, convention) for gt in candidates])
        hits.append(match_best_unmatched(overlaps, matched.get(detection.video), threshold))
    num_positives = sum(len(video_segments) for video_segments in segments.values())
    return average_precision([detection.score for detection in ranked], hits, num_positives)


def match_best_unmatched(overlaps: np.ndarray, matched: np.ndarray | None, threshold: float) -> bool:
    """Marks the highest-overlap unmatched candidate with overlap >= threshold; True if one was found.

    ``overlaps`` [G] holds the detection's overlap with each ground truth item of its video and
    ``matched`` [G] which of them an earlier, higher-scored detection already took (updated here).
    """
    if matched is None or overlaps.size == 0:
        return False
    for index in np.argsort(-overlaps, kind="stable"):
        if overlaps[index] < threshold:
            return False
        if not matched[index]:
            matched[index] = True
            return True
    return False
