"""Scoring a prediction set against a dataset's ground truth: ``score`` → ``ScoreReport``.

Datasets and what is scored (all values in percent, as in the paper's tables):

- ``groundingyoutube`` and ``synth`` (the same files; a synth benchmark keeps them in
  ``test/annotations``): IoU+Point (mean over videos, leaving out a video with no second in
  either foreground, and pooled over frames: Σ correct / Σ union), pointing game
  (exact and ±``tolerance`` px), video mAP at each threshold and their mean, spatial accuracy
  (IoU > ``iou_threshold``) and spatial mAP (mean of the per-class APs);
- ``miningyoutube``: temporal IoU and IoD after the order-preserving alignment of
  ``stg_cli.metrics.alignment`` (each video's transcript = its ``seg.json`` steps by start time,
  matched to the prediction's similarity columns by query text), mean over videos;
- ``youcook-interactions``: pointing game (exact and ±``tolerance`` px), spatial accuracy and
  spatial mAP (classes: the YouCook2 sentence of the segment holding the frame).

The frames of the trimmed metrics (pointing game, spatial accuracy/AP) are the annotated
seconds s (with a box) inside a ground-truth segment (start <= s <= end); IoU+Point's
ground-truth foreground is every second with a box or inside a segment, and a segment second
without a box is correct with the segment's step, whatever the point
(:func:`stg_cli.metrics.grounding.ground_truth_foreground`). Definitions are in
``stg_cli.metrics.grounding``, ``tubes`` and ``alignment``.

Rules:

- every ground-truth video is scored; one without a prediction counts as an empty prediction
  and is listed in ``missing``; predictions of videos the ground truth does not have are listed
  in ``unknown`` and ignored;
- predicted labels are matched to the annotation's spelling (as given, else after
  ``stg_cli.text.normalize.normalize_text``);
- prediction coordinates are rescaled from the prediction's width × height to the annotation
  frame size (``id2wh_new.json``). YouCook2-Interactions boxes lie in each video's own frame,
  which no annotation file records: with the videos (:func:`with_video_frame_sizes`, ``stg
  score --videos``) their sizes are the frames; otherwise the predictions are used at their own
  size (``stg ground`` writes the video's) and a note says so;
- data defects: a degenerate ground-truth box (x1 >= x2 or y1 >= y2) cannot contain a point,
  so its second is left out of the pointing game, IoU+Point and spatial accuracy/AP (on both
  the ground-truth and the predicted side) and counted in ``counts["degenerate_frames"]``; in
  tubes it is a zero-area box, and a ground-truth tube of only degenerate boxes (which no
  prediction can overlap) is left out of video mAP (``counts["degenerate_tubes"]``). Boxes
  reaching outside the frame are used as given.
  A zero-length MiningYouTube segment owns its one second under the default inclusive frame
  ranges (none under half-open ones); a step that owns no frame is left out of its transcript.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from stg_cli.defaults import DATASETS, DEFAULT_MASK_THRESHOLD
from stg_cli.errors import UserError
from stg_cli.metrics import grounding
from stg_cli.metrics.alignment import (
    DEFAULT_TAU,
    FRAME_RANGES,
    TemporalCounts,
    align_transcript,
    ground_truth_frame_labels,
    temporal_counts,
    transcript,
)
from stg_cli.metrics.annotations import (
    BACKGROUND,
    YOUCOOK_BOXES,
    YOUCOOK_SEGMENTS,
    YOUCOOK_SENTENCES,
    FrameBox,
    GroundTruth,
    Segment,
    find_defects,
    load_frame_sizes,
    load_ground_seg,
    load_grounding_youtube_boxes,
    load_mining_youtube_segments,
    load_vid2step,
    load_youcook_interactions,
)
from stg_cli.metrics.ap import INTERPOLATIONS, average_precision, match_best_unmatched
from stg_cli.metrics.geometry import BOX_CONVENTIONS, check_choice, is_degenerate
from stg_cli.metrics.grounding import MaskRule, Rate, SpatialRecord
from stg_cli.metrics.official import (
    OFFICIAL_MASK,
    PROTOCOLS,
    official_frames,
    official_scores,
    segment_items,
    youcook_canvas,
)
from stg_cli.metrics.predictions import PredictedSegment, VideoPrediction
from stg_cli.metrics.tubes import (
    DEFAULT_THRESHOLDS,
    TUBE_IOU_METHODS,
    LabeledTube,
    TubeDetection,
    ground_truth_tubes,
    tube_iou,
)
from stg_cli.text.normalize import normalize_text
from stg_cli.video import VideoError, probe

# A MiningYouTube step missing from the predicted queries scores the lowest cosine on every frame.
MISSING_STEP_SCORE = -1.0

DEFECT_RULE = (
    "degenerate ground-truth boxes (x1 >= x2 or y1 >= y2) are left out of the pointing game, "
    "IoU+Point and spatial accuracy/AP and are zero-area boxes in tubes (a tube of only "
    "degenerate boxes is left out of video mAP); boxes outside the frame are used as given; "
    "a MiningYouTube step that owns no frame (zero-length under half-open ranges, or inside an "
    "earlier-starting segment) is left out of its transcript"
)

ProgressCallback = Callable[[int, int], None]
TUBE_REGIONS = ("masks", "boxes")
OFFICIAL_NOTE = (
    "protocol official: the pointing game and spatial accuracy follow the authors' evaluation "
    "code (their items, point, mask scale and box raster) and video mAP's masks their mask "
    "scale; IoU+Point, video mAP and IoU/IoD are not in their code and keep stg's definitions"
)


@dataclass(frozen=True)
class ScoreOptions:
    """Conventions of a scoring run (the defaults are the project's definitions).

    Attributes:
        tolerance: pixels of the tolerant pointing game (15).
        iou_threshold: spatial accuracy/AP hit when box IoU > this (0.3).
        thresholds: tube-IoU thresholds of video mAP (0.1 … 0.5).
        box_convention: ``"pixel"`` (inclusive corners) or ``"continuous"``.
        tube_method: ``"volume"`` or ``"temporal_x_spatial"`` (see ``tubes.tube_iou``).
        tube_regions: a predicted tube's region per frame, ``"masks"`` (the heatmap's mask at
            ``mask_threshold``, read from the heatmaps file; a prediction without one uses its
            boxes, and a note says so) or ``"boxes"``.
        mask_threshold: the mask threshold on the per-frame cell-probability scale (0.01, as
            ``stg ground`` draws its boxes).
        interpolation: spatial AP, ``"all_point"`` or ``"trapezoid"`` (video mAP is all-point).
        tau: background score of the MiningYouTube alignment (0.5).
        frame_ranges: MiningYouTube frame ownership, ``"inclusive"`` (whole integer seconds) or
            ``"half_open"`` (see ``stg_cli.metrics.alignment``).
        require_label: pointing game and spatial accuracy also require the frame's predicted
            label to equal the ground-truth step (False: localisation only).
        protocol: ``"stg"`` (the definitions above) or ``"official"``: the authors' items,
            point, mask scale, box raster and YouCook2 canvas for the trimmed spatial metrics
            and the masks of video mAP (``stg_cli.metrics.official``).
    """

    tolerance: float = 15.0
    iou_threshold: float = 0.3
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    box_convention: str = "pixel"
    tube_method: str = "volume"
    tube_regions: str = "masks"
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    interpolation: str = "all_point"
    tau: float = DEFAULT_TAU
    frame_ranges: str = "inclusive"
    require_label: bool = False
    protocol: str = "stg"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("box_convention", BOX_CONVENTIONS),
            ("tube_method", TUBE_IOU_METHODS),
            ("tube_regions", TUBE_REGIONS),
            ("interpolation", INTERPOLATIONS),
            ("frame_ranges", FRAME_RANGES),
            ("protocol", PROTOCOLS),
        ):
            check_choice(getattr(self, name), allowed, name)
        for name in ("tolerance", "iou_threshold", "tau", "mask_threshold"):
            value = getattr(self, name)
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not is_number or not np.isfinite(value):
                raise UserError(f"{name} must be a finite number, got {value!r}")
        if self.tolerance < 0:
            raise UserError(f"tolerance must be >= 0, got {self.tolerance}")
        if not 0 <= self.mask_threshold <= 1:
            raise UserError(f"mask_threshold must be in [0, 1], got {self.mask_threshold}")
        if not 0 <= self.iou_threshold <= 1:
            raise UserError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if not self.thresholds or not all(0 <= t <= 1 for t in self.thresholds):
            raise UserError(f"thresholds must be non-empty numbers in [0, 1], got {self.thresholds}")


@dataclass(frozen=True)
class ScoreReport:
    """The result of ``score``.

    Attributes:
        metrics: name → value in percent, in the paper's column order.
        counts: name → integer counts behind the metrics (hits, frames, tubes, …).
        per_class: metric → class → percent (spatial AP; video AP averaged over thresholds).
        per_video: one row per ground-truth video (``video``, ``predicted`` and its metrics).
        missing: ground-truth videos without a prediction (scored as empty).
        unknown: predicted videos the ground truth does not have (ignored).
        defects: the ground truth's defect counts and examples; ``defect_rule`` their handling.
        notes: anything else worth knowing about this run (one line each).
    """

    dataset: str
    videos: int
    metrics: dict[str, float]
    counts: dict[str, int]
    per_class: dict[str, dict[str, float]]
    per_video: list[dict]
    missing: list[str]
    unknown: list[str]
    defects: dict
    defect_rule: str
    options: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def load_ground_truth(paths: Sequence[Path | str], dataset: str, protocol: str = "stg") -> GroundTruth:
    """The dataset's ground truth from folders and/or files, found by their released names.

    groundingyoutube/synth: ``GoundingYouTubeBox.json`` (or ``box_anno.json``),
    ``ground_seg.json`` (with ``protocol="official"`` also ``seg.json`` when there is one: the
    authors' windows of the trimmed metrics), optional ``id2wh_new.json`` and ``vid2step.json``
    (a synth benchmark folder is searched in ``test/annotations``); miningyoutube: ``seg.json``;
    youcook-interactions: ``final_dataset_annotations.pkl``, ``final_dataset_segments.pkl`` and
    optional ``youcookii_annotations_trainval.json``.

    Raises:
        UserError: unknown dataset, a missing path or a required file not found.
    """
    dataset = _dataset(dataset)
    files = _files_by_name(paths, dataset)

    def need(*names: str) -> Path:
        for name in names:
            if name in files:
                return files[name]
        where = ", ".join(str(Path(path)) for path in paths)
        raise UserError(f"{' or '.join(names)} not found in {where} (needed for {dataset})")

    if dataset == "youcook-interactions":
        return load_youcook_interactions(
            need(YOUCOOK_BOXES), need(YOUCOOK_SEGMENTS), files.get(YOUCOOK_SENTENCES)
        )
    if dataset == "miningyoutube":
        segments = load_mining_youtube_segments(need("seg.json"))
        defects = find_defects({}, segments, {}, "continuous")
        return GroundTruth({}, segments, {}, {}, defects, "continuous")
    boxes = load_grounding_youtube_boxes(need("GoundingYouTubeBox.json", "box_anno.json"))
    check_choice(protocol, PROTOCOLS, "protocol")
    segments = load_ground_seg(need("ground_seg.json"))
    sizes = load_frame_sizes(files["id2wh_new.json"]) if "id2wh_new.json" in files else {}
    pools = load_vid2step(files["vid2step.json"]) if "vid2step.json" in files else {}
    defects = find_defects(boxes, segments, sizes, "frames")
    trimmed = load_ground_seg(files["seg.json"]) if protocol == "official" and "seg.json" in files else None
    return GroundTruth(boxes, segments, sizes, pools, defects, "frames", trimmed_segments=trimmed)


def with_video_frame_sizes(ground_truth: GroundTruth, videos: Mapping[str, Path]) -> GroundTruth:
    """``ground_truth`` with the frame size of each of its videos that ``videos`` (video id →
    file) holds and can be read: YouCook2-Interactions' boxes lie in each video's own frame,
    which its files do not record. Videos that cannot be read keep the default."""
    sizes = dict(ground_truth.frame_sizes)
    for video in ground_truth.boxes:
        path = videos.get(video)
        if path is None or video in sizes:
            continue
        try:
            info = probe(path)
        except (VideoError, OSError):
            continue
        sizes[video] = (info.width, info.height)
    return replace(ground_truth, frame_sizes=sizes)


def score(
    predictions: Mapping[str, VideoPrediction],
    ground_truth: GroundTruth,
    dataset: str,
    on_progress: ProgressCallback | None = None,
    **options: object,
) -> ScoreReport:
    """Scores ``predictions`` (video id → prediction) on ``ground_truth`` of ``dataset``.

    ``options`` are ``ScoreOptions`` fields; ``on_progress(done, total)`` is called per video.

    Raises:
        ValueError: an unknown option or a bad option value.
        UserError: an unknown dataset, or (miningyoutube) a prediction without a usable
            similarity matrix.
    """
    dataset = _dataset(dataset)
    known = {item.name for item in fields(ScoreOptions)}
    unknown_options = sorted(set(options) - known)
    if unknown_options:
        raise UserError(f"unknown scoring option(s): {', '.join(unknown_options)}")
    settings = ScoreOptions(**options)
    if dataset == "miningyoutube":
        videos = sorted(ground_truth.segments)
    else:
        videos = sorted(ground_truth.boxes)
    video_set = set(videos)
    missing = [video for video in videos if video not in predictions]
    unknown = sorted(video for video in predictions if video not in video_set)
    progress = on_progress or (lambda done, total: None)
    if dataset == "miningyoutube":
        scored = _score_mining(predictions, ground_truth, videos, settings, progress)
    else:
        scored = _score_spatial(predictions, ground_truth, videos, dataset, settings, progress)
    if settings.protocol == "official":
        scored.notes.append(OFFICIAL_NOTE)
    return ScoreReport(
        dataset=dataset,
        videos=len(videos),
        metrics=scored.metrics,
        counts=scored.counts,
        per_class=scored.per_class,
        per_video=scored.per_video,
        missing=missing,
        unknown=unknown,
        defects=asdict(ground_truth.defects),
        defect_rule=DEFECT_RULE,
        options={**asdict(settings), "thresholds": list(settings.thresholds)},
        notes=scored.notes,
    )


def canonical_labels(prediction: VideoPrediction, known: Sequence[str]) -> VideoPrediction:
    """The prediction with its labels spelled as in ``known`` where they match after
    normalisation (``background`` and unmatched labels are kept)."""
    by_form = {}
    for label in known:
        by_form.setdefault(_normalized(label), label)
    exact = set(known) | {BACKGROUND}

    def fix(label: str) -> str:
        if label in exact:
            return label
        return by_form.get(_normalized(label), label)

    labels = [fix(label) for label in prediction.labels]
    segments = [
        PredictedSegment(fix(segment.label), segment.start, segment.end, segment.score)
        for segment in prediction.segments
    ]
    if labels == prediction.labels and segments == prediction.segments:
        return prediction
    return replace(prediction, labels=labels, segments=segments)


@dataclass(frozen=True)
class _Scored:
    """What scoring one dataset's videos gives: the metrics and counts of the report, its
    per-class and per-video rows and its notes (see :class:`ScoreReport`)."""

    metrics: dict[str, float]
    counts: dict[str, int]
    per_class: dict[str, dict[str, float]]
    per_video: list[dict]
    notes: list[str]


def _score_spatial(
    predictions: Mapping[str, VideoPrediction],
    ground_truth: GroundTruth,
    videos: list[str],
    dataset: str,
    settings: ScoreOptions,
    progress: ProgressCallback,
) -> _Scored:
    notes: list[str] = []
    untrimmed = dataset != "youcook-interactions"
    pointing, pointing_tolerant, pooled = Rate(0, 0), Rate(0, 0), Rate(0, 0)
    records: list[SpatialRecord] = []
    iou_point_values: list[float] = []
    gt_tubes: list[LabeledTube] = []
    detections: list[ScoredDetection] = []
    per_video: list[dict] = []
    degenerate_frames = degenerate_tubes = outside_segments = rescaled = 0
    unsized, without_heatmaps = set(), set()
    official = settings.protocol == "official"
    mask_rule = OFFICIAL_MASK if official else MaskRule(settings.mask_threshold)
    if settings.tube_regions == "boxes":
        mask_rule = None
    for done, video in enumerate(videos):
        frames = ground_truth.boxes.get(video, [])
        segments = ground_truth.segments.get(video, [])
        known = list(ground_truth.query_pools.get(video, []))
        annotated = {frame.label for frame in frames} | {segment.label for segment in segments}
        known += sorted({label for label in annotated if label} - set(known))
        prediction = predictions.get(video)
        size = ground_truth.frame_sizes.get(video)
        if prediction is not None:
            prediction = canonical_labels(prediction, known)
            if official and not untrimmed:
                size = youcook_canvas(size or (prediction.width, prediction.height))
            if size is None:
                unsized.add(video)
            elif size != (prediction.width, prediction.height):
                prediction = prediction.rescaled(size, settings.box_convention)
                rescaled += 1
        valid = [frame for frame in frames if not is_degenerate(frame.box)]
        degenerate_frames += len(frames) - len(valid)
        if official:
            windows = (ground_truth.trimmed_segments or {}).get(video, segments)
            trimmed = segment_items(frames, windows, labels_from_segments=not untrimmed)
            outside_segments += len({f.second for f in frames} - {f.second for f in trimmed})
            frame_size = (prediction.width, prediction.height) if prediction is not None else (1, 1)
            video_pointing, video_tolerant, video_records = official_scores(
                trimmed,
                official_frames(prediction, [frame.second for frame in trimmed]),
                frame_size,
                settings.tolerance,
                settings.require_label,
            )
        else:
            trimmed = _inside_segments(valid, segments, labels_from_segments=not untrimmed)
            outside_segments += len(valid) - len(trimmed)
            guesses = grounding.frame_predictions(prediction, [frame.second for frame in trimmed])
            video_pointing = grounding.pointing_game(trimmed, guesses, 0.0, settings.require_label)
            video_tolerant = grounding.pointing_game(
                trimmed, guesses, settings.tolerance, settings.require_label
            )
            video_records = grounding.spatial_records(
                trimmed, guesses, settings.iou_threshold, settings.box_convention, settings.require_label
            )
        pointing += video_pointing
        pointing_tolerant += video_tolerant
        records += video_records
        row = {"video": video, "predicted": prediction is not None, "frames": len(trimmed)}
        if untrimmed:
            skipped = {frame.second for frame in frames} - {frame.second for frame in valid}
            foreground = {
                second: guess
                for second, guess in grounding.foreground_predictions(prediction).items()
                if second not in skipped
            }
            truth = grounding.ground_truth_foreground(valid, segments, skipped)
            video_iou_point = grounding.iou_point(truth, foreground)
            pooled += video_iou_point
            if video_iou_point.total:
                iou_point_values.append(video_iou_point.percent)
            row["iou_point"] = video_iou_point.percent
            tube_frames = {frame.second: (frame.box, frame.label) for frame in frames}
            video_tubes = []
            for tube in ground_truth_tubes(video, tube_frames):
                if all(is_degenerate(box) for box in tube.boxes.values()):
                    degenerate_tubes += 1
                else:
                    video_tubes.append(tube)
            gt_tubes += video_tubes
            rule = mask_rule
            if prediction is not None and prediction.heatmaps is None and rule is not None:
                without_heatmaps.add(video)
                rule = None
            predicted = grounding.predicted_tubes(prediction, rule)
            detections += detection_overlaps(video_tubes, predicted, settings)
        row["pointing_game"] = video_pointing.percent
        row["pointing_game_tolerant"] = video_tolerant.percent
        row["spatial_accuracy"] = grounding.spatial_accuracy(video_records).percent
        per_video.append(row)
        progress(done + 1, len(videos))
    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    per_class: dict[str, dict[str, float]] = {}
    if untrimmed:
        metrics["iou_point"] = float(np.mean(iou_point_values)) if iou_point_values else 0.0
        metrics["iou_point_pooled"] = pooled.percent
        counts["iou_point_correct"], counts["iou_point_union"] = pooled.hits, pooled.total
    metrics["pointing_game"] = pointing.percent
    metrics["pointing_game_tolerant"] = pointing_tolerant.percent
    counts["pointing_hits"], counts["pointing_frames"] = pointing.hits, pointing.total
    counts["pointing_tolerant_hits"] = pointing_tolerant.hits
    if untrimmed and gt_tubes:
        tube_map, tube_ap = _video_map(gt_tubes, detections, settings)
        for threshold, value in tube_map.items():
            metrics[f"map@{threshold:g}"] = value
        metrics["map_mean"] = float(np.mean(list(tube_map.values())))
        per_class["video_ap_mean"] = tube_ap
        counts["gt_tubes"], counts["predicted_tubes"] = len(gt_tubes), len(detections)
        counts["degenerate_tubes"] = degenerate_tubes
    accuracy = grounding.spatial_accuracy(records)
    metrics["spatial_accuracy"] = accuracy.percent
    class_ap = grounding.spatial_ap(records, settings.interpolation)
    metrics["spatial_map"] = 100.0 * float(np.mean(list(class_ap.values()))) if class_ap else 0.0
    per_class["spatial_ap"] = {label: 100.0 * value for label, value in class_ap.items()}
    counts["spatial_hits"] = int(accuracy.hits)
    counts["degenerate_frames"] = degenerate_frames
    counts["frames_outside_segments"] = outside_segments
    counts["rescaled_videos"] = rescaled
    if without_heatmaps:
        notes.append(
            f"{len(without_heatmaps)} predicted video(s) have no heatmaps file: their tubes are "
            "their boxes, not masks"
        )
    if unsized:
        notes.append(
            f"annotation frame size unknown for {len(unsized)} predicted video(s): coordinates used as given"
        )
    return _Scored(metrics, counts, per_class, per_video, notes)


@dataclass(frozen=True)
class ScoredDetection:
    """A predicted tube reduced to what video mAP needs: its tube IoU with each ground-truth
    tube of its class in its video (``overlaps``, in the order those tubes have in the
    ground truth), so that its masks need not be kept."""

    video: str
    label: str
    score: float
    overlaps: np.ndarray


def detection_overlaps(
    video_tubes: Sequence[LabeledTube], detections: Sequence[TubeDetection], settings: ScoreOptions
) -> list[ScoredDetection]:
    """Each detection of one video with its tube IoU against that video's ground-truth tubes of
    its class (``video_tubes``: the video's tubes, in order)."""
    scored = []
    for detection in detections:
        candidates = [tube for tube in video_tubes if tube.label == detection.label]
        overlaps = np.array(
            [
                tube_iou(detection.regions, tube.boxes, settings.box_convention, settings.tube_method)
                for tube in candidates
            ]
        )
        scored.append(ScoredDetection(detection.video, detection.label, detection.score, overlaps))
    return scored


def _video_map(
    gt_tubes: list[LabeledTube], detections: list[ScoredDetection], settings: ScoreOptions
) -> tuple[dict[float, float], dict[str, float]]:
    """Video mAP per threshold and each class's AP averaged over thresholds (percent).

    The same as ``tubes.video_map`` (and tested against it), but each tube IoU is computed
    once, per video as its tubes are built (:func:`detection_overlaps`), and reused for every
    threshold.
    """
    tubes_by_class: dict[str, list[LabeledTube]] = {}
    for tube in gt_tubes:
        tubes_by_class.setdefault(tube.label, []).append(tube)
    detections_by_class: dict[str, list[ScoredDetection]] = {}
    for detection in detections:
        if detection.label in tubes_by_class:
            detections_by_class.setdefault(detection.label, []).append(detection)
    thresholds = [float(t) for t in settings.thresholds]
    ap_at: dict[float, list[float]] = {threshold: [] for threshold in thresholds}
    per_class = {}
    for label in sorted(tubes_by_class):
        tubes_per_video: dict[str, int] = {}
        for tube in tubes_by_class[label]:
            tubes_per_video[tube.video] = tubes_per_video.get(tube.video, 0) + 1
        ranked = sorted(detections_by_class.get(label, []), key=lambda d: -d.score)
        class_ap = []
        for threshold in thresholds:
            matched = {video: np.zeros(count, dtype=bool) for video, count in tubes_per_video.items()}
            hits = [match_best_unmatched(d.overlaps, matched.get(d.video), threshold) for d in ranked]
            ap = average_precision([d.score for d in ranked], hits, len(tubes_by_class[label]))
            ap_at[threshold].append(ap)
            class_ap.append(ap)
        per_class[label] = 100.0 * float(np.mean(class_ap))
    return {t: 100.0 * float(np.mean(values)) for t, values in ap_at.items()}, per_class


def _score_mining(
    predictions: Mapping[str, VideoPrediction],
    ground_truth: GroundTruth,
    videos: list[str],
    settings: ScoreOptions,
    progress: ProgressCallback,
) -> _Scored:
    per_video, notes = [], []
    totals = TemporalCounts(0, 0, 0)
    ious, iods = [], []
    unalignable = []
    missing_steps = steps_without_frames = 0
    for done, video in enumerate(videos):
        segments = ground_truth.segments[video]
        prediction = predictions.get(video)
        if prediction is None:
            frames = np.arange(0, max((s.end for s in segments), default=0) + 1, dtype=np.float64)
            truth = ground_truth_frame_labels(frames, segments, settings.frame_ranges)
            counts = temporal_counts(truth, [BACKGROUND] * len(truth))
        else:
            similarity = prediction.similarity()
            ordered, dropped = transcript(similarity.times, segments, settings.frame_ranges)
            steps_without_frames += dropped
            steps = [segment.label for segment in ordered]
            columns = _step_columns(steps, similarity.queries)
            missing_steps += sum(column is None for column in columns)
            matrix = np.full((similarity.times.size, len(columns)), MISSING_STEP_SCORE)
            for step, column in enumerate(columns):
                if column is not None:
                    matrix[:, step] = similarity.matrix[:, column]
            aligned = align_transcript(matrix, settings.tau)
            if len(steps) > similarity.times.size:
                unalignable.append(video)
            labels = [steps[k] if k >= 0 else BACKGROUND for k in aligned]
            truth = ground_truth_frame_labels(similarity.times, segments, settings.frame_ranges)
            counts = temporal_counts(truth, labels)
        totals = TemporalCounts(
            totals.intersection + counts.intersection,
            totals.union + counts.union,
            totals.detected + counts.detected,
        )
        ious.append(100.0 * counts.iou)
        iods.append(100.0 * counts.iod)
        per_video.append(
            {
                "video": video,
                "predicted": prediction is not None,
                "steps": len(segments),
                "iou": ious[-1],
                "iod": iods[-1],
            }
        )
        progress(done + 1, len(videos))
    metrics = {
        "iou": float(np.mean(ious)) if ious else 0.0,
        "iod": float(np.mean(iods)) if iods else 0.0,
        "iou_pooled": 100.0 * totals.iou,
        "iod_pooled": 100.0 * totals.iod,
    }
    counts = {
        "intersection_frames": totals.intersection,
        "union_frames": totals.union,
        "detected_frames": totals.detected,
        "unalignable_videos": len(unalignable),
        "steps_without_frames": steps_without_frames,
    }
    if missing_steps:
        notes.append(
            f"{missing_steps} ground-truth step(s) were not among their video's predicted queries "
            f"and scored {MISSING_STEP_SCORE} on every frame"
        )
    if steps_without_frames:
        notes.append(
            f"{steps_without_frames} ground-truth step(s) own no analysed frame under "
            f"{settings.frame_ranges} frame ranges (inside an earlier-starting segment, or past the "
            "last frame) and were left out of their transcript"
        )
    if unalignable:
        notes.append(
            f"{len(unalignable)} video(s) have fewer frames than steps and were left all "
            f"background: {', '.join(unalignable[:5])}"
        )
    return _Scored(metrics, counts, {}, per_video, notes)


def _step_columns(steps: list[str], queries: list[str]) -> list[int | None]:
    """The similarity column of each step (exact, then normalised spelling); None if absent."""
    exact = {query: index for index, query in reversed(list(enumerate(queries)))}
    normalized = {_normalized(query): index for index, query in reversed(list(enumerate(queries)))}
    return [exact.get(step, normalized.get(_normalized(step))) for step in steps]


def _inside_segments(
    frames: list[FrameBox], segments: list[Segment], labels_from_segments: bool
) -> list[FrameBox]:
    """Frames at a second inside a segment (start <= s <= end); unlabeled frames take the
    label of the first such segment when ``labels_from_segments``."""
    if not segments:
        return []
    starts = np.array([segment.start for segment in segments])
    ends = np.array([segment.end for segment in segments])
    kept = []
    for frame in frames:
        inside = np.flatnonzero((starts <= frame.second) & (frame.second <= ends))
        if inside.size == 0:
            continue
        if labels_from_segments and frame.label is None:
            frame = FrameBox(frame.second, frame.box, segments[int(inside[0])].label)
        kept.append(frame)
    return kept


def _files_by_name(paths: Sequence[Path | str], dataset: str) -> dict[str, Path]:
    if not paths:
        raise UserError("no ground-truth path given")
    files: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.setdefault(path.name, path)
            continue
        if not path.is_dir():
            raise UserError(f"ground truth not found: {path}")
        folder = path
        if dataset == "synth":
            for inner in (path / "test" / "annotations", path / "annotations"):
                if inner.is_dir():
                    folder = inner
                    break
        for child in sorted(folder.iterdir()):
            if child.is_file():
                files.setdefault(child.name, child)
    return files


def _dataset(dataset: str) -> str:
    key = str(dataset).strip().lower()
    if key not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    return key


@functools.lru_cache(maxsize=65536)
def _normalized(label: str) -> str:
    return normalize_text(label)
