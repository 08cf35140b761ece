"""Reference prediction sets built from a ground truth: an oracle and the model-free priors.

Every set knows when and what, from the same ground truth a model's score is measured on (one
timing source): it labels every second of the ground-truth foreground with its step (a second
with a box: the box's step; a second inside a segment without a box: the step of a segment
holding it, the first in alphabetical order where several do; see
:func:`stg_cli.metrics.grounding.ground_truth_foreground`), every other whole second from 0 to
``padding`` seconds after the last such second as background, and predicts one segment per
ground-truth tube (a maximal run of one step), score 1, except for tubes of only degenerate
boxes, which the scorer leaves out. The sets differ in where, at each annotated second t (a
second with a box) of a W × H annotation frame; at the other foreground seconds they give no
point, since no metric judges one there:

- ``oracle``: the point is the centre of the ground-truth box, ((x1 + x2) / 2, (y1 + y2) / 2),
  and the box is the ground-truth box (none for a degenerate box, which a prediction may not
  hold). It scores 100 on every GroundingYouTube metric.
- ``centre``: the frame centre ((W − 1) / 2, (H − 1) / 2) and the centred box of half the
  frame's width and height, (W/4, H/4, 3W/4 − 1, 3H/4 − 1): how far a model gets that knows
  when and what, but not where.
- ``random``: a point drawn uniformly from [0, W − 1] × [0, H − 1], one per annotated second in
  order, from a generator seeded with (``seed``, CRC-32 of the video id): the same points for a
  seed whatever other videos are scored, others for another seed.
- ``motion``: the centre of the grid cell where the picture changes most. frame_t is the first
  decoded frame with time ≥ t (the sampling rule of :mod:`stg_cli.video.decode`); the map is
  |frame_t − the previous decoded frame|, summed over RGB and mean-pooled to the gh × gw grid
  (for the first frame of the video, the next frame stands in for the previous one); the point
  is the argmax cell's centre.
- ``centred_energy``: the same with |frame_t − the video's mean frame|, the mean taken over
  frame_k for every whole second k of the video (its frames at 1 fps).

``random``, ``motion`` and ``centred_energy`` predict the centre prior's box size (half the
frame's width and height) centred on the point, shifted to lie inside the frame.

``motion`` and ``centred_energy`` read the video and use no model and no query. The frame is
squashed onto the grid (as the backbones see it), so cell (i, j) covers the same part of the
video and of the annotation frame and its centre is ((j + ½)·W/gw − ½, (i + ½)·H/gh − ½) in
annotation pixels; ties go to the tied cell nearest the grid's centre (the point rule of
:mod:`stg_cli.metrics.heatmaps`, the same as a model's). Frames are decoded squashed to
``cell_pixels`` pixels per cell (16: 112 × 112 for 7 × 7) and sampled by timestamp at twice the
video's average frame rate (at most :data:`MAX_SAMPLING_FPS`; that rate when the file does not
say), repeated frames dropped, so that consecutive samples are consecutive decoded frames (a
variable-rate video may lose frames closer together than the sampling step). Decoding streams: a
video holds the previous frame, a running sum and the small frames of its annotated seconds,
never all its frames. An annotated second after the video's last frame gets no point (a miss);
a one-frame video has no change (the first cell).

:func:`score_priors` builds and scores every prior in :data:`PRIORS` in one call.

For the MiningYouTube temporal IoU/IoD, :func:`uniform_temporal` scores the ``uniform`` prior:
each video's transcript (its steps that own a frame, by start time, as the alignment gets them;
:func:`stg_cli.metrics.alignment.transcript`) split evenly over
its frames, frame i of F taking step ⌊i·K/F⌋ of K: what knowing the steps and their order, but
not when they happen, scores.

The frame size is the annotation frame size (``id2wh_new.json``); where it is unknown, the
ground truth's ``default_frame_size``. ``save_predictions`` writes a set in the prediction file
format.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from stg_cli import files
from stg_cli.errors import UserError
from stg_cli.metrics.alignment import ground_truth_frame_labels, temporal_counts, transcript
from stg_cli.metrics.annotations import BACKGROUND, FrameBox, GroundTruth
from stg_cli.metrics.geometry import is_degenerate
from stg_cli.metrics.grounding import ground_truth_foreground
from stg_cli.metrics.heatmaps import argmax_cell_centres
from stg_cli.metrics.predictions import PredictedSegment, VideoPrediction
from stg_cli.metrics.score import score
from stg_cli.metrics.tubes import ground_truth_tubes
from stg_cli.video import VideoError, iter_clips, probe

#: the reference sets the scoring benchmark times (``stg bench score``)
BASELINES = ("oracle", "centre")
#: what :func:`baseline_predictions` builds from the ground truth alone
GROUND_TRUTH_KINDS = ("oracle", "centre", "random")
#: the model-free priors reported beside a model's spatial scores
PRIORS = ("centre", "random", "motion", "centred_energy")
#: the priors that read the video
VIDEO_PRIORS = ("motion", "centred_energy")
DEFAULT_GRID = (7, 7)
CELL_PIXELS = 16
MAX_SAMPLING_FPS = 120.0
# frame times are compared to sampling times up to float rounding
_EPS = 1e-6

VideoCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class PriorMaps:
    """Pooled change maps of one video at the annotated seconds that have a frame.

    seconds: [S] int64, the asked seconds at or before the video's last frame, increasing
    motion:  [S, gh, gw] float32, per cell the mean over its pixels of |frame_t − previous frame|
             summed over RGB (0 … 765)
    energy:  [S, gh, gw] float32, the same for |frame_t − the video's mean frame at 1 fps|
    """

    seconds: np.ndarray
    motion: np.ndarray
    energy: np.ndarray


@dataclass(frozen=True)
class VideoPriors:
    """The video-reading priors of a ground truth's videos.

    predictions: prior (``motion``, ``centred_energy``) → video → prediction, for the videos
        that could be read; skipped: video → why it was left out (no file, unreadable).
    """

    predictions: dict[str, dict[str, VideoPrediction]]
    skipped: dict[str, str]


@dataclass(frozen=True)
class PriorScores:
    """Every prior of :data:`PRIORS` scored on a ground truth.

    scores: prior → the :class:`stg_cli.metrics.score.ScoreReport` metrics (percent); a
        video-reading prior is there when at least one video could be read, and is scored on
        those videos only. frames: prior → its pointing-game frames. skipped: video → why its
        video-reading priors were left out. notes: one line each.
    """

    scores: dict[str, dict[str, float]]
    frames: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def baseline_predictions(
    ground_truth: GroundTruth, kind: str = "oracle", padding: int = 10, seed: int = 0
) -> dict[str, VideoPrediction]:
    """The ``kind`` prediction (``oracle``, ``centre`` or ``random`` with ``seed`` ≥ 0) for every
    video with boxes."""
    if kind not in GROUND_TRUTH_KINDS:
        raise ValueError(f"kind must be one of {', '.join(GROUND_TRUTH_KINDS)}; got {kind!r}")
    predictions = {}
    for video, frames in ground_truth.boxes.items():
        width, height = ground_truth.frame_sizes.get(video, ground_truth.default_frame_size)
        if kind == "oracle":
            points = np.array([_box_centre(frame.box) for frame in frames]).reshape(-1, 2)
            boxes = np.array(
                [np.full(4, np.nan) if is_degenerate(frame.box) else frame.box for frame in frames]
            ).reshape(-1, 4)
        else:
            if kind == "centre":
                points = np.tile([(width - 1) / 2, (height - 1) / 2], (len(frames), 1))
            else:
                generator = np.random.default_rng([seed, zlib.crc32(video.encode())])
                points = generator.uniform((0, 0), (width - 1, height - 1), (len(frames), 2))
            boxes = boxes_around(points, width, height)
        predictions[video] = _prediction(ground_truth, video, kind, points, boxes, padding)
    return predictions


def prior_maps(
    path: Path | str,
    seconds: Sequence[int],
    grid: tuple[int, int] = DEFAULT_GRID,
    cell_pixels: int = CELL_PIXELS,
) -> PriorMaps:
    """The motion and centred-energy maps of the video at ``path`` at ``seconds`` (see the module
    docstring for the definitions and the decoding).

    Raises:
        VideoError: when the video cannot be read (one line).
    """
    gh, gw = grid
    size = (gh * cell_pixels, gw * cell_pixels)
    info = probe(path)
    rate = min(2 * info.fps, MAX_SAMPLING_FPS) if info.fps else MAX_SAMPLING_FPS
    wanted = {int(second) for second in seconds}
    kept: dict[int, np.ndarray] = {}  # second → its frame, for the centred energy at the end
    motion: dict[int, np.ndarray] = {}
    total = np.zeros((*size, 3), dtype=np.float64)
    count = next_second = 0
    previous: np.ndarray | None = None
    previous_pts = -np.inf
    first_seconds: list[int] = []  # seconds of the first frame, whose change is to the next one
    for _, _, pts, frames in iter_clips(path, rate, size, batch_size=64):
        for time, image in zip(pts.tolist(), frames[:, 0]):
            if time <= previous_pts + _EPS:
                continue
            if first_seconds:
                for second in first_seconds:
                    motion[second] = _change(image, previous, grid)
                first_seconds = []
            while next_second <= time + _EPS:
                total += image
                count += 1
                if next_second in wanted:
                    kept[next_second] = image.copy()  # not a view that keeps its batch
                    if previous is None:
                        first_seconds.append(next_second)
                    else:
                        motion[next_second] = _change(image, previous, grid)
                next_second += 1
            previous, previous_pts = image, time
    for second in first_seconds:
        motion[second] = np.zeros(grid, dtype=np.float32)
    order = sorted(kept)
    mean = total / max(count, 1)
    energy = [_pooled(np.abs(kept[second] - mean), grid) for second in order]
    return PriorMaps(
        seconds=np.array(order, dtype=np.int64),
        motion=np.array([motion[second] for second in order], dtype=np.float32).reshape(-1, gh, gw),
        energy=np.array(energy, dtype=np.float32).reshape(-1, gh, gw),
    )


def video_prior_predictions(
    ground_truth: GroundTruth,
    videos: Mapping[str, Path],
    grid: tuple[int, int] = DEFAULT_GRID,
    padding: int = 10,
    cell_pixels: int = CELL_PIXELS,
    on_video: VideoCallback | None = None,
) -> VideoPriors:
    """The ``motion`` and ``centred_energy`` predictions of every video with boxes, its file
    taken from ``videos`` (video id → path, e.g. :func:`stg_cli.video_files.video_paths`).

    A video without a file or that cannot be read is left out of both and listed in
    ``skipped`` with the reason; the others go on. ``on_video(done, total, video)`` is called
    after each video.
    """
    predictions: dict[str, dict[str, VideoPrediction]] = {kind: {} for kind in VIDEO_PRIORS}
    skipped: dict[str, str] = {}
    for done, (video, frames) in enumerate(ground_truth.boxes.items()):
        path = videos.get(video)
        if path is None:
            skipped[video] = "no video file"
        else:
            try:
                maps = prior_maps(path, [frame.second for frame in frames], grid, cell_pixels)
            except (VideoError, OSError) as error:
                skipped[video] = str(error).strip().splitlines()[0]
            else:
                width, height = ground_truth.frame_sizes.get(video, ground_truth.default_frame_size)
                for kind, values in (("motion", maps.motion), ("centred_energy", maps.energy)):
                    found = dict(zip(maps.seconds.tolist(), argmax_cell_centres(values, width, height)))
                    points = np.array(
                        [found.get(frame.second, (np.nan, np.nan)) for frame in frames]
                    ).reshape(-1, 2)
                    predictions[kind][video] = _prediction(
                        ground_truth, video, kind, points, boxes_around(points, width, height), padding
                    )
        if on_video is not None:
            on_video(done + 1, len(ground_truth.boxes), video)
    return VideoPriors(predictions, skipped)


def score_priors(
    ground_truth: GroundTruth,
    dataset: str,
    videos: Mapping[str, Path] | None = None,
    grid: tuple[int, int] = DEFAULT_GRID,
    seed: int = 0,
    on_video: VideoCallback | None = None,
    **options: object,
) -> PriorScores:
    """Builds every prior of :data:`PRIORS` on ``ground_truth`` and scores it as ``dataset``
    (``options``: :class:`stg_cli.metrics.score.ScoreOptions` fields, as for the model).

    Without ``videos`` the video-reading priors are not built; a video missing from ``videos``
    or unreadable is left out of them (and listed in ``skipped`` and the notes), and they are
    scored on the other videos' ground truth.

    Raises:
        UserError: for ``miningyoutube``, which has no boxes (its prior is
            :func:`uniform_temporal`).
    """
    if dataset.strip().lower() == "miningyoutube":
        raise UserError("the spatial priors need boxes; miningyoutube has none")
    predictions = {
        kind: baseline_predictions(ground_truth, kind, seed=seed)
        for kind in PRIORS
        if kind not in VIDEO_PRIORS
    }
    truths = dict.fromkeys(predictions, ground_truth)
    skipped: dict[str, str] = {}
    notes: list[str] = []
    if videos is not None:
        found = video_prior_predictions(ground_truth, videos, grid, on_video=on_video)
        skipped = found.skipped
        read = set(ground_truth.boxes) - set(skipped)
        if skipped:
            listed = "; ".join(f"{video}: {why}" for video, why in list(skipped.items())[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            notes.append(
                f"motion and centred energy are scored on {len(read)} of "
                f"{len(ground_truth.boxes)} videos; left out: {listed}{more}"
            )
        if read:
            for kind in VIDEO_PRIORS:
                predictions[kind] = found.predictions[kind]
                truths[kind] = _restricted(ground_truth, read)
    reports = {
        kind: score(predictions[kind], truths[kind], dataset, **options)
        for kind in PRIORS
        if kind in predictions
    }
    return PriorScores(
        scores={kind: report.metrics for kind, report in reports.items()},
        frames={kind: report.counts["pointing_frames"] for kind, report in reports.items()},
        skipped=skipped,
        notes=notes,
    )


def close_priors_note(priors: PriorScores, pointing: float, margin: float = 5.0) -> str | None:
    """A note naming the priors whose pointing game is within ``margin`` points of (or above)
    the model's ``pointing`` (percent); None when there is none."""
    close = [
        f"{kind.replace('_', ' ')} {values['pointing_game']:.1f}"
        for kind, values in priors.scores.items()
        if values["pointing_game"] >= pointing - margin
    ]
    if not close:
        return None
    return (
        f"model-free priors point within {margin:g} points of the model's pointing game "
        f"({pointing:.1f}) or above it: {', '.join(close)}; these scores do not show that the "
        "query is grounded"
    )


def boxes_around(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes of the centre prior's size (W/2 × H/2 pixels) centred on ``points`` [S, 2] and
    shifted to lie inside the frame → [S, 4] inclusive pixel corners (NaN rows stay NaN)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    corner = np.clip(points - (width / 4 - 0.5, height / 4 - 0.5), 0, (width / 2, height / 2))
    return np.concatenate([corner, corner + (width / 2 - 1, height / 2 - 1)], axis=1)


def prediction_to_dict(prediction: VideoPrediction) -> dict:
    """The prediction as its JSON value (the file format ``load_predictions`` reads)."""
    frames = []
    for index, t in enumerate(prediction.times):
        point, box = prediction.points[index], prediction.boxes[index]
        frames.append(
            {
                "t": float(t),
                "label": prediction.labels[index],
                "score": float(prediction.scores[index]),
                "point": None if np.isnan(point[0]) else [float(v) for v in point],
                "box": None if np.isnan(box[0]) else [float(v) for v in box],
            }
        )
    return {
        "video": prediction.video,
        "width": prediction.width,
        "height": prediction.height,
        "fps": prediction.fps,
        "duration": prediction.duration,
        "queries": list(prediction.queries),
        "segments": [
            {"label": s.label, "start": s.start, "end": s.end, "score": s.score} for s in prediction.segments
        ],
        "frames": frames,
        "heatmaps": prediction.heatmaps.name if prediction.heatmaps is not None else None,
    }


def save_predictions(predictions: Mapping[str, VideoPrediction], path: Path | str) -> Path:
    """Writes ``{video_id: prediction}`` as one combined JSON file (parents created)."""
    payload = {video: prediction_to_dict(prediction) for video, prediction in predictions.items()}
    return files.write_json(path, payload, indent=None)


def uniform_temporal(
    ground_truth: GroundTruth, frame_times: Mapping[str, np.ndarray], frame_ranges: str = "inclusive"
) -> dict[str, float]:
    """Temporal IoU and IoD (percent, mean over videos) of the ``uniform`` prior.

    Args:
        ground_truth: MiningYouTube-style segments (``seg.json``).
        frame_times: the analysed frame times [F] of each video (e.g. a prediction's); a video
            with segments but no frame times is scored as all background (0).
    """
    ious, iods = [], []
    for video, segments in ground_truth.segments.items():
        times = np.asarray(frame_times.get(video, ()), dtype=np.float64)
        ordered, _ = transcript(times, segments, frame_ranges)
        steps = [segment.label for segment in ordered]
        count = times.size
        labels = (
            [steps[index * len(steps) // count] for index in range(count)]
            if steps
            else ([BACKGROUND] * count)
        )
        truth = ground_truth_frame_labels(times, segments, frame_ranges)
        counts = temporal_counts(truth, labels)
        ious.append(100.0 * counts.iou)
        iods.append(100.0 * counts.iod)
    return {"iou": float(np.mean(ious)) if ious else 0.0, "iod": float(np.mean(iods)) if iods else 0.0}


def _prediction(
    ground_truth: GroundTruth, video: str, kind: str, points: np.ndarray, boxes: np.ndarray, padding: int
) -> VideoPrediction:
    """The prediction of ``video`` with ``points`` [S, 2] and ``boxes`` [S, 4] (NaN: none) at its
    S annotated seconds (in ``ground_truth.boxes`` order); labels and segments as the module
    docstring says."""
    frames = ground_truth.boxes[video]
    width, height = ground_truth.frame_sizes.get(video, ground_truth.default_frame_size)
    foreground = ground_truth_foreground(frames, ground_truth.segments.get(video, []))
    last = max([frame.second for frame in frames] + list(foreground), default=0)
    seconds = np.arange(0, last + padding + 1)
    count = seconds.size
    labels = [BACKGROUND] * count
    for second, truth in foreground.items():
        labels[second] = min(truth.labels)
    all_points, all_boxes = np.full((count, 2), np.nan), np.full((count, 4), np.nan)
    for frame, point, box in zip(frames, points, boxes):
        labels[frame.second] = _label(frame)
        all_points[frame.second], all_boxes[frame.second] = point, box
    tube_frames = {frame.second: (frame.box, _label(frame)) for frame in frames}
    segments = [
        PredictedSegment(tube.label, float(min(tube.boxes)), float(max(tube.boxes)), 1.0)
        for tube in ground_truth_tubes(video, tube_frames)
        if not all(is_degenerate(box) for box in tube.boxes.values())
    ]
    return VideoPrediction(
        video=video,
        width=width,
        height=height,
        fps=1.0,
        duration=float(seconds[-1] + 1),
        queries=list(ground_truth.query_pools.get(video, [])),
        segments=segments,
        times=seconds.astype(np.float64),
        labels=labels,
        scores=np.array([0.0 if label == BACKGROUND else 1.0 for label in labels]),
        points=all_points,
        boxes=all_boxes,
        heatmaps=None,
        source=Path(f"<{kind}>"),
    )


def _label(frame: FrameBox) -> str:
    return frame.label if frame.label is not None else "unlabeled"


def _box_centre(box: Sequence[float]) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    return ((x1 + x2) / 2, (y1 + y2) / 2)


def _change(image: np.ndarray, other: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """|image − other| (uint8 [gh·c, gw·c, 3] each) pooled to the grid → [gh, gw]."""
    return _pooled(np.abs(image.astype(np.int16) - other), grid)


def _pooled(difference: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """|difference| [gh·c, gw·c, 3] summed over RGB and mean-pooled to the grid → [gh, gw]."""
    gh, gw = grid
    values = difference.sum(axis=2, dtype=np.float64)
    return (
        values.reshape(gh, values.shape[0] // gh, gw, values.shape[1] // gw)
        .mean(axis=(1, 3))
        .astype(np.float32)
    )


def _restricted(ground_truth: GroundTruth, videos: set[str]) -> GroundTruth:
    """``ground_truth`` with the boxes and segments of ``videos`` only."""
    return replace(
        ground_truth,
        boxes={video: frames for video, frames in ground_truth.boxes.items() if video in videos},
        segments={video: items for video, items in ground_truth.segments.items() if video in videos},
    )
