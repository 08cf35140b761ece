"""Loading and checking grounding predictions (the files ``stg ground`` writes).

One video's prediction::

    {"video": id, "width": W, "height": H, "fps": 1.0, "duration": s, "queries": [...],
     "segments": [{"label": str, "start": s, "end": s, "score": f}],
     "frames":   [{"t": s, "label": str | "background", "score": f,
                   "point": [x, y] | null, "box": [x1, y1, x2, y2] | null}],
     "heatmaps": "<id>.heatmaps.npz" | null}

``video``, ``width``, ``height``, ``segments`` and ``frames`` are required; ``fps`` defaults to
1.0, ``queries`` to ``[]``, ``duration`` and ``heatmaps`` to null. Coordinates are pixels of
the prediction's own ``width`` × ``height`` frame; times are seconds.

``load_predictions`` reads, from a path:

- a folder: its ``predictions.json`` when there is one, otherwise every ``*.json`` in it;
- a file: a single video's prediction (a mapping with ``"video"`` and ``"frames"``) or a
  combined ``{video_id: prediction}`` mapping.

The heatmaps file (``times`` [F], ``cells`` [F, gh, gw], ``similarity`` [F, Q], ``queries``
[Q]) is resolved relative to the JSON that names it and read only when asked for:
``VideoPrediction.similarity`` for the MiningYouTube alignment, ``VideoPrediction.cells`` for
the masks of video mAP.

Conventions (parameters with these defaults):

- the frame a prediction gives for an annotated second s is its frame with the time nearest to
  s, if that is at most ``max(0.5, 0.5 / fps)`` seconds away (ties: the earlier frame);
  otherwise the prediction says nothing about s;
- ``rescaled`` moves points and boxes to the annotation frame size. Under the ``"pixel"`` box
  convention pixel i covers [i, i + 1), so a point maps as (x + 0.5) · s − 0.5 and boxes as in
  ``geometry.rescale_box``; under ``"continuous"`` every coordinate is multiplied by s.

Every problem raises ``UserError`` with one line naming the file and the field.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from stg_cli.errors import UserError
from stg_cli.metrics.annotations import BACKGROUND
from stg_cli.metrics.geometry import BOX_CONVENTIONS, check_choice

COMBINED_NAME = "predictions.json"
# a frame of the JSON and a row of its heatmaps file are the same frame within this (seconds;
# the file keeps times in float32)
FRAME_TIME_MATCH = 0.01


@dataclass(frozen=True)
class PredictedSegment:
    """A predicted temporal segment of one query, ``start <= end`` in seconds."""

    label: str
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class Similarity:
    """The frame × query similarity of a heatmaps file: ``times`` [F], ``matrix`` [F, Q]."""

    times: np.ndarray
    matrix: np.ndarray
    queries: list[str]


@dataclass(frozen=True)
class Cells:
    """The per-frame cell probabilities of a heatmaps file: ``times`` [F], ``cells`` [F, gh, gw]
    (of each frame's predicted label)."""

    times: np.ndarray
    cells: np.ndarray

    def rows(self, times: np.ndarray) -> np.ndarray:
        """The row of each of ``times`` [S] (the frame at that time, within 10 ms), -1 where
        there is none."""
        return nearest_frames(self.times, times, FRAME_TIME_MATCH)


@dataclass(frozen=True)
class VideoPrediction:
    """One video's prediction, frames sorted by time (stable).

    Attributes:
        times: [F] float64 frame times in seconds.
        labels: [F] predicted label per frame (``"background"`` for none).
        scores: [F] float64 frame scores.
        points: [F, 2] float64 ``(x, y)``, NaN where the frame has no point.
        boxes: [F, 4] float64 ``(x1, y1, x2, y2)``, NaN where the frame has no box.
        heatmaps: the heatmaps file, or None.
        source: the JSON file it came from.
    """

    video: str
    width: int
    height: int
    fps: float
    duration: float | None
    queries: list[str]
    segments: list[PredictedSegment]
    times: np.ndarray
    labels: list[str]
    scores: np.ndarray
    points: np.ndarray
    boxes: np.ndarray
    heatmaps: Path | None
    source: Path

    def frame_indices(self, seconds: np.ndarray) -> np.ndarray:
        """Index of the frame for each second in ``seconds`` [S] (-1 where there is none).

        The nearest frame in time, if within ``max(0.5, 0.5 / fps)`` s; ties take the earlier.
        """
        return nearest_frames(self.times, seconds, max(0.5, 0.5 / self.fps))

    def times_at(self, indices: np.ndarray) -> np.ndarray:
        """The times of frames ``indices`` [S] (as ``frame_indices`` gives), NaN where -1."""
        indices = np.asarray(indices, dtype=np.int64)
        times = np.full(indices.shape, np.nan)
        found = indices >= 0
        times[found] = self.times[indices[found]]
        return times

    def foreground_seconds(self) -> dict[int, int]:
        """Whole seconds whose frame (as ``frame_indices`` picks it) is not background → index."""
        if self.times.size == 0:
            return {}
        seconds = np.unique(np.round(self.times).astype(np.int64))
        indices = self.frame_indices(seconds)
        return {
            int(second): int(index)
            for second, index in zip(seconds, indices)
            if index >= 0 and self.labels[index] != BACKGROUND
        }

    def rescaled(self, size: tuple[int, int], convention: str = "pixel") -> VideoPrediction:
        """The prediction with points and boxes moved to a ``(width, height)`` frame."""
        check_choice(convention, BOX_CONVENTIONS, "convention")
        if (self.width, self.height) == tuple(size):
            return self
        scale = np.array([size[0] / self.width, size[1] / self.height])
        offset = 0.5 if convention == "pixel" else 0.0
        points = (self.points + offset) * scale - offset
        far_edge = np.array([0.0, 0.0, 1.0, 1.0]) if convention == "pixel" else np.zeros(4)
        boxes = (self.boxes + far_edge) * np.tile(scale, 2) - far_edge
        return replace(self, width=int(size[0]), height=int(size[1]), points=points, boxes=boxes)

    def cells(self) -> Cells:
        """Reads ``times`` [F] and ``cells`` [F, gh, gw] from the heatmaps file.

        Raises:
            UserError: when there is no heatmaps file or it lacks these arrays.
        """
        times, cells = self._arrays("the cells are needed", "cells")
        if cells.ndim != 3 or cells.shape[0] != times.size or 0 in cells.shape[1:]:
            raise UserError(
                f"{self.heatmaps}: cells must be [F, gh, gw] with F = {times.size}, got {list(cells.shape)}"
            )
        order = np.argsort(times, kind="stable")
        return Cells(times[order], cells[order])

    def similarity(self) -> Similarity:
        """Reads ``times`` [F], ``similarity`` [F, Q] and ``queries`` [Q] from the heatmaps file.

        Raises:
            UserError: when there is no heatmaps file or it lacks these arrays.
        """
        times, matrix, queries = self._arrays("the similarity is needed", "similarity", "queries")
        queries = [str(query) for query in queries]
        if matrix.ndim != 2 or matrix.shape != (times.size, len(queries)):
            raise UserError(
                f"{self.heatmaps}: similarity must be [F, Q] = [{times.size}, {len(queries)}], "
                f"got {list(matrix.shape)}"
            )
        if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(times)):
            raise UserError(f"{self.heatmaps}: similarity and times must be finite")
        order = np.argsort(times, kind="stable")
        return Similarity(times[order], matrix[order], queries)

    def _arrays(self, why: str, *names: str) -> list[np.ndarray]:
        """``times`` (float64) and the named arrays (float64 unless strings) of the heatmaps
        file; ``why`` says in the error what needs them."""
        if self.heatmaps is None:
            raise UserError(f"{self.source}: {self.video}: heatmaps is null; {why}")
        if not self.heatmaps.is_file():
            raise UserError(f"{self.source}: {self.video}: heatmaps file not found: {self.heatmaps}")
        try:
            with np.load(self.heatmaps, allow_pickle=False) as archive:
                arrays = [np.asarray(archive[name]) for name in ("times", *names)]
        except KeyError as error:
            raise UserError(f"{self.heatmaps}: missing array {error}") from None
        except (OSError, ValueError, EOFError) as error:
            raise UserError(f"{self.heatmaps}: not a readable npz file ({error})") from None
        try:
            return [array if array.dtype.kind == "U" else array.astype(np.float64) for array in arrays]
        except (TypeError, ValueError):
            raise UserError(f"{self.heatmaps}: {', '.join(names)} must be numbers") from None


def nearest_frames(frame_times: np.ndarray, times: np.ndarray, within: float) -> np.ndarray:
    """For each of ``times`` [S], the index of the nearest of the sorted ``frame_times`` [F]
    (ties: the earlier) if at most ``within`` seconds away, else -1 → int64 [S]."""
    times = np.asarray(times, dtype=np.float64)
    if frame_times.size == 0:
        return np.full(times.shape, -1, dtype=np.int64)
    after = np.clip(np.searchsorted(frame_times, times, side="left"), 0, frame_times.size - 1)
    before = np.clip(after - 1, 0, frame_times.size - 1)
    use_before = np.abs(times - frame_times[before]) <= np.abs(frame_times[after] - times)
    nearest = np.where(use_before, before, after)
    return np.where(np.abs(frame_times[nearest] - times) <= within, nearest, -1).astype(np.int64)


def load_predictions(path: Path | str) -> dict[str, VideoPrediction]:
    """Predictions by video id from a folder, a combined file or a single-video file.

    Raises:
        UserError: a missing path, an empty folder, bad JSON, a bad field (file and field
            named), or one video in two files.
    """
    path = Path(path)
    if path.is_dir():
        combined = path / COMBINED_NAME
        files = [combined] if combined.is_file() else sorted(path.glob("*.json"))
        if not files:
            raise UserError(f"no prediction files (*.json) in {path}")
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"predictions not found: {path}")
    predictions: dict[str, VideoPrediction] = {}
    for file in files:
        for video, prediction in _load_file(file).items():
            if video in predictions:
                raise UserError(f"{file}: video {video} is also predicted in {predictions[video].source}")
            predictions[video] = prediction
    return predictions


def parse_prediction(entry: object, source: Path, where: str) -> VideoPrediction:
    """One video's prediction from its JSON value; ``where`` names it in errors."""
    entry = _mapping(entry, source, where)
    video = _string(_required(entry, "video", source, where), source, f"{where}.video")
    width = _positive_int(_required(entry, "width", source, where), source, f"{where}.width")
    height = _positive_int(_required(entry, "height", source, where), source, f"{where}.height")
    fps = _number(entry.get("fps", 1.0), source, f"{where}.fps")
    if fps <= 0:
        raise UserError(f"{source}: {where}.fps must be > 0, got {fps}")
    duration = entry.get("duration")
    if duration is not None:
        duration = _number(duration, source, f"{where}.duration")
    queries = entry.get("queries", [])
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise UserError(f"{source}: {where}.queries must be a list of strings")
    listed = _list(_required(entry, "segments", source, where), source, f"{where}.segments")
    segments = [_segment(item, source, f"{where}.segments[{index}]") for index, item in enumerate(listed)]
    frames = _list(_required(entry, "frames", source, where), source, f"{where}.frames")
    count = len(frames)
    times, scores = np.empty(count), np.empty(count)
    points, boxes = np.full((count, 2), np.nan), np.full((count, 4), np.nan)
    labels: list[str] = []
    for index, frame in enumerate(frames):
        at = f"{where}.frames[{index}]"
        frame = _mapping(frame, source, at)
        times[index] = _number(_required(frame, "t", source, at), source, f"{at}.t")
        labels.append(_string(_required(frame, "label", source, at), source, f"{at}.label"))
        scores[index] = _number(_required(frame, "score", source, at), source, f"{at}.score")
        point = frame.get("point")
        if point is not None:
            points[index] = _numbers(point, 2, source, f"{at}.point", "[x, y] or null")
        box = frame.get("box")
        if box is not None:
            boxes[index] = _numbers(box, 4, source, f"{at}.box", "[x1, y1, x2, y2] or null")
            if boxes[index, 0] > boxes[index, 2] or boxes[index, 1] > boxes[index, 3]:
                raise UserError(f"{source}: {at}.box must have x1 <= x2 and y1 <= y2")
    order = np.argsort(times, kind="stable")
    heatmaps = entry.get("heatmaps")
    if heatmaps is not None and not isinstance(heatmaps, str):
        raise UserError(f"{source}: {where}.heatmaps must be a file name or null")
    return VideoPrediction(
        video=video,
        width=width,
        height=height,
        fps=fps,
        duration=duration,
        queries=list(queries),
        segments=segments,
        times=times[order],
        labels=[labels[i] for i in order],
        scores=scores[order],
        points=points[order],
        boxes=boxes[order],
        heatmaps=source.parent / heatmaps if heatmaps else None,
        source=source,
    )


def _load_file(path: Path) -> dict[str, VideoPrediction]:
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply") from None
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror})") from None
    data = _mapping(data, path, "the top level")
    if "video" in data and "frames" in data:
        prediction = parse_prediction(data, path, "prediction")
        return {prediction.video: prediction}
    predictions = {}
    for key, entry in data.items():
        prediction = parse_prediction(entry, path, f"[{key!r}]")
        if prediction.video != key:
            raise UserError(f"{path}: [{key!r}].video is {prediction.video!r}, not its key")
        predictions[key] = prediction
    return predictions


def _segment(item: object, source: Path, where: str) -> PredictedSegment:
    item = _mapping(item, source, where)
    label = _string(_required(item, "label", source, where), source, f"{where}.label")
    start = _number(_required(item, "start", source, where), source, f"{where}.start")
    end = _number(_required(item, "end", source, where), source, f"{where}.end")
    score = _number(_required(item, "score", source, where), source, f"{where}.score")
    if start > end:
        raise UserError(f"{source}: {where} has start {start} > end {end}")
    return PredictedSegment(label, start, end, score)


def _required(entry: Mapping, key: str, source: Path, where: str) -> object:
    if key not in entry:
        raise UserError(f"{source}: {where} has no {key!r}")
    return entry[key]


def _mapping(value: object, source: Path, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise UserError(f"{source}: {where} must be an object, got {type(value).__name__}")
    return value


def _list(value: object, source: Path, where: str) -> list:
    if not isinstance(value, list):
        raise UserError(f"{source}: {where} must be a list, got {type(value).__name__}")
    return value


def _string(value: object, source: Path, where: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{source}: {where} must be a string, got {value!r}")
    return value


def _number(value: object, source: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UserError(f"{source}: {where} must be a finite number, got {value!r}")
    return float(value)


def _positive_int(value: object, source: Path, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{source}: {where} must be a positive integer, got {value!r}")
    return value


def _numbers(value: object, length: int, source: Path, where: str, expected: str) -> list[float]:
    if not isinstance(value, list) or len(value) != length:
        raise UserError(f"{source}: {where} must be {expected}, got {value!r}")
    return [_number(item, source, where) for item in value]
