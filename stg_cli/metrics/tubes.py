"""Spatio-temporal tubes and video mAP@θ.

A tube maps an integer second (a 1 fps frame) to a region: a box ``[x1, y1, x2, y2]`` or a mask
(bool [H, W] of the annotation frame; a predicted tube's regions are masks by default, see
``stg_cli.metrics.score``); its temporal extent is its set of seconds, each an inclusive frame.
Boxes use the "pixel" convention unless told otherwise (see ``stg_cli.metrics.geometry``).

Tube IoU methods:

- ``"volume"`` (default, the project's definition): Σ_t |M_t ∩ B_t| / Σ_t |M_t ∪ B_t| over the union
  of both extents; a second present in only one tube adds that region's full area to the union;
- ``"temporal_x_spatial"``: temporal IoU of the extents times the mean region IoU over the
  shared seconds (the UCF101-24 / ACT ``iou3dt``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stg_cli.metrics.ap import average_precision, match_best_unmatched
from stg_cli.metrics.geometry import (
    BOX_CONVENTIONS,
    Box,
    Region,
    check_choice,
    check_unit_interval,
    region_area,
    region_intersection,
    region_iou,
)

TUBE_IOU_METHODS = ("volume", "temporal_x_spatial")
DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)

Tube = Mapping[int, Region]


@dataclass(frozen=True)
class LabeledTube:
    """A ground-truth tube: the seconds of one run of a step in one video."""

    video: str
    label: str
    boxes: Tube


@dataclass(frozen=True)
class TubeDetection:
    """A predicted tube of one step in one video, ranked by ``score``: its region (box or mask)
    per second."""

    video: str
    label: str
    regions: Tube
    score: float


@dataclass(frozen=True)
class VideoMap:
    """Video mAP results.

    Attributes:
        map_at: θ → mAP over the classes with at least one ground-truth tube.
        mean: mean of ``map_at`` over the thresholds.
        ap_per_class: θ → (class → AP).
    """

    map_at: dict[float, float]
    mean: float
    ap_per_class: dict[float, dict[str, float]]


def tube_iou(tube_a: Tube, tube_b: Tube, convention: str = "pixel", method: str = "volume") -> float:
    """IoU of two tubes (see the module docstring for the methods); 0 when the union is empty.

    Tubes on seconds 10..20 and 15..30 with identical boxes give 6/21 under either method; with
    boxes [5,5,14,14] vs [0,0,9,9] they give 150/2550 ("volume") and 6/21 · 25/175 = 0.0408
    ("temporal_x_spatial").
    """
    check_choice(convention, BOX_CONVENTIONS, "convention")
    check_choice(method, TUBE_IOU_METHODS, "method")
    seconds_a, seconds_b = _seconds(tube_a, "tube_a"), _seconds(tube_b, "tube_b")
    shared = seconds_a & seconds_b
    if method == "temporal_x_spatial":
        extent = len(seconds_a | seconds_b)
        if not shared:
            return 0.0
        spatial = np.mean([region_iou(tube_a[t], tube_b[t], convention) for t in shared])
        return float(len(shared) / extent * spatial)
    intersection = sum(region_intersection(tube_a[t], tube_b[t], convention) for t in shared)
    union = (
        sum(region_area(region, convention) for region in tube_a.values())
        + sum(region_area(region, convention) for region in tube_b.values())
        - intersection
    )
    return intersection / union if union > 0 else 0.0


def ground_truth_tubes(video: str, frames: Mapping[int, tuple[Box, str]]) -> list[LabeledTube]:
    """The maximal runs of consecutive seconds with the same step label, in time order.

    ``frames`` maps a second to its (box, step) annotation; a missing second or a change of step
    ends a run.
    """
    tubes: list[LabeledTube] = []
    run: dict[int, Box] = {}
    run_label: str | None = None
    previous: int | None = None
    for second in sorted(_seconds(frames, f"frames of {video!r}")):
        box, label = frames[second]
        if run and (label != run_label or second != previous + 1):
            tubes.append(LabeledTube(video, run_label, run))
            run = {}
        run[second] = box
        run_label, previous = label, second
    if run:
        tubes.append(LabeledTube(video, run_label, run))
    return tubes


def video_ap(
    ground_truth: Sequence[LabeledTube],
    detections: Sequence[TubeDetection],
    threshold: float,
    convention: str = "pixel",
    method: str = "volume",
) -> dict[str, float]:
    """AP per class at tube-IoU ``threshold``, for every class with at least one ground-truth tube.

    Per class, detections are taken by descending score; each matches the highest-IoU unmatched
    ground-truth tube of that class in its video with IoU >= threshold, else it is a false
    positive; AP is all-point interpolated. Detections of classes without ground truth are ignored.
    """
    check_choice(convention, BOX_CONVENTIONS, "convention")
    check_choice(method, TUBE_IOU_METHODS, "method")
    threshold = check_unit_interval(threshold, "threshold")
    ap_per_class: dict[str, float] = {}
    for label in sorted({tube.label for tube in ground_truth}):
        class_tubes: dict[str, list[LabeledTube]] = {}
        for tube in ground_truth:
            if tube.label == label:
                class_tubes.setdefault(tube.video, []).append(tube)
        matched = {video: np.zeros(len(tubes), dtype=bool) for video, tubes in class_tubes.items()}
        ranked = sorted(
            (detection for detection in detections if detection.label == label),
            key=lambda detection: -detection.score,
        )
        hits = []
        for detection in ranked:
            candidates = class_tubes.get(detection.video, [])
            overlaps = np.array(
                [tube_iou(detection.regions, tube.boxes, convention, method) for tube in candidates]
            )
            hits.append(match_best_unmatched(overlaps, matched.get(detection.video), threshold))
        num_positives = sum(len(tubes) for tubes in class_tubes.values())
        ap_per_class[label] = average_precision([d.score for d in ranked], hits, num_positives)
    return ap_per_class


def video_map(
    ground_truth: Sequence[LabeledTube],
    detections: Sequence[TubeDetection],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    convention: str = "pixel",
    method: str = "volume",
) -> VideoMap:
    """Video mAP at each threshold and their mean; ValueError without any ground-truth tube."""
    if not ground_truth:
        raise ValueError("ground_truth has no tubes: video mAP is undefined")
    if len(thresholds) == 0:
        raise ValueError("thresholds must not be empty")
    ap_per_class = {
        float(threshold): video_ap(ground_truth, detections, threshold, convention, method)
        for threshold in thresholds
    }
    map_at = {threshold: float(np.mean(list(aps.values()))) for threshold, aps in ap_per_class.items()}
    return VideoMap(map_at=map_at, mean=float(np.mean(list(map_at.values()))), ap_per_class=ap_per_class)


def _seconds(tube: Mapping[int, object], name: str) -> set[int]:
    for second in tube:
        if isinstance(second, bool) or not isinstance(second, numbers.Integral):
            raise ValueError(f"{name} must be keyed by integer seconds, got {second!r}")
    return set(tube)
