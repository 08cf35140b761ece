"""Reference prediction sets built from a ground truth: an oracle and a centre-point baseline.

Both label every annotated second with its ground-truth step, every other whole second from 0
to ``padding`` seconds after the last annotated one as background, and predict one segment per
ground-truth tube (a maximal run of one step), score 1, except for tubes of only degenerate
boxes, which the scorer leaves out.

- ``oracle``: the point is the centre of the ground-truth box, ((x1 + x2) / 2, (y1 + y2) / 2),
  and the box is the ground-truth box (none for a degenerate box, which a prediction may not
  hold). It scores 100 on every GroundingYouTube metric.
- ``centre``: the oracle's labels and segments, with the point at the frame centre
  ((W − 1) / 2, (H − 1) / 2) and the centred box of half the frame's width and height: how far
  a model gets that knows when and what, but not where.

For the MiningYouTube temporal IoU/IoD, :func:`uniform_temporal` scores the ``uniform`` prior:
each video's transcript (its steps by start time, as the alignment gets them) split evenly over
its frames, frame i of F taking step ⌊i·K/F⌋ of K: what knowing the steps and their order, but
not when they happen, scores.

The frame size is the annotation frame size (``id2wh_new.json``); where it is unknown,
``default_size`` (640 × 480). ``save_predictions`` writes a set in the prediction file format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from stg_cli.metrics.alignment import ground_truth_frame_labels, temporal_counts
from stg_cli.metrics.annotations import BACKGROUND, GroundTruth
from stg_cli.metrics.geometry import is_degenerate
from stg_cli.metrics.predictions import PredictedSegment, VideoPrediction
from stg_cli.metrics.tubes import ground_truth_tubes

BASELINES = ("oracle", "centre")


def baseline_predictions(
    ground_truth: GroundTruth,
    kind: str = "oracle",
    padding: int = 10,
    default_size: tuple[int, int] = (640, 480),
) -> dict[str, VideoPrediction]:
    """The ``kind`` ("oracle" or "centre") prediction for every video with boxes."""
    if kind not in BASELINES:
        raise ValueError(f"kind must be one of {', '.join(BASELINES)}; got {kind!r}")
    predictions = {}
    for video, frames in ground_truth.boxes.items():
        width, height = ground_truth.frame_sizes.get(video, default_size)
        annotated = {frame.second: frame for frame in frames}
        last = max(annotated, default=0)
        seconds = np.arange(0, last + padding + 1)
        count = seconds.size
        labels = [BACKGROUND] * count
        points, boxes = np.full((count, 2), np.nan), np.full((count, 4), np.nan)
        centre_box = (width / 4, height / 4, width * 3 / 4 - 1, height * 3 / 4 - 1)
        for index, second in enumerate(seconds):
            frame = annotated.get(int(second))
            if frame is None:
                continue
            labels[index] = frame.label if frame.label is not None else "unlabeled"
            x1, y1, x2, y2 = frame.box
            if kind == "oracle":
                points[index] = ((x1 + x2) / 2, (y1 + y2) / 2)
                if not is_degenerate(frame.box):
                    boxes[index] = frame.box
            else:
                points[index] = ((width - 1) / 2, (height - 1) / 2)
                boxes[index] = centre_box
        tube_frames = {
            frame.second: (frame.box, frame.label if frame.label is not None else "unlabeled")
            for frame in frames
        }
        segments = [
            PredictedSegment(tube.label, float(min(tube.boxes)), float(max(tube.boxes)), 1.0)
            for tube in ground_truth_tubes(video, tube_frames)
            if not all(is_degenerate(box) for box in tube.boxes.values())
        ]
        predictions[video] = VideoPrediction(
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
            points=points,
            boxes=boxes,
            heatmaps=None,
            source=Path(f"<{kind}>"),
        )
    return predictions


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
            {"label": s.label, "start": s.start, "end": s.end, "score": s.score}
            for s in prediction.segments
        ],
        "frames": frames,
        "heatmaps": prediction.heatmaps.name if prediction.heatmaps is not None else None,
    }


def save_predictions(predictions: Mapping[str, VideoPrediction], path: Path | str) -> Path:
    """Writes ``{video_id: prediction}`` as one combined JSON file (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {video: prediction_to_dict(prediction) for video, prediction in predictions.items()}
    path.write_text(json.dumps(payload))
    return path


def uniform_temporal(
    ground_truth: GroundTruth,
    frame_times: Mapping[str, np.ndarray],
    frame_ranges: str = "half_open",
) -> dict[str, float]:
    """Temporal IoU and IoD (percent, mean over videos) of the ``uniform`` prior.

    Args:
        ground_truth: MiningYouTube-style segments (``seg.json``).
        frame_times: the analysed frame times [F] of each video (e.g. a prediction's); a video
            with segments but no frame times is scored as all background (0).
    """
    ious, iods = [], []
    for video, segments in ground_truth.segments.items():
        ordered = sorted(segments, key=lambda s: (s.start, s.end, s.id or 0))
        times = np.asarray(frame_times.get(video, ()), dtype=np.float64)
        steps = [segment.label for segment in ordered]
        count = times.size
        labels = [steps[index * len(steps) // count] for index in range(count)] if steps else (
            [BACKGROUND] * count
        )
        truth = ground_truth_frame_labels(times, ordered, frame_ranges)
        counts = temporal_counts(truth, labels)
        ious.append(100.0 * counts.iou)
        iods.append(100.0 * counts.iod)
    return {
        "iou": float(np.mean(ious)) if ious else 0.0,
        "iod": float(np.mean(iods)) if iods else 0.0,
    }
