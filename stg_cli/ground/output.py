"""Prediction files written by ``stg ground`` (read back by ``stg score``).

Per video, in the output folder (``<name>`` is the sanitised video id, see :func:`safe_name`):

- ``<name>.json``::

    {"video": id, "width": W, "height": H, "fps": f, "duration": s, "queries": [...],
     "segments": [{"label": str, "start": s, "end": s, "score": f}],
     "frames": [{"t": s, "label": str | "background", "score": f,
                 "point": [x, y] | null, "box": [x1, y1, x2, y2] | null}],
     "heatmaps": "<name>.heatmaps.npz"}

- ``<name>.heatmaps.npz``: ``times`` float32 [F], ``cells`` float32 [F, gh, gw] (the per-frame
  probability over grid cells for the frame's predicted label, zeros for background frames),
  ``similarity`` float32 [F, Q] (frame × query cosine, columns in "queries" order), ``queries``
  (str [Q]).

and ``predictions.json`` = ``{video_id: <the per-video object>}`` for the videos of the run.

Exports for other tools (:func:`write_exports`, ``stg ground --export``):

- ``activitynet.json``: the ActivityNet detection format that temporal-detection evaluation
  reads, ``{"version": "VERSION 1.3", "results": {video_id: [{"label", "score", "segment":
  [start, end]}]}, "external_data": {...}}``: one entry per predicted segment;
- ``ava.csv`` + ``ava_labels.pbtxt``: AVA-style rows ``video_id, time, x1, y1, x2, y2,
  action_id, score`` (box corners divided by the frame's width and height; time in seconds of
  each analysed frame, not AVA's whole-second keyframes) for every analysed frame with a
  predicted step and a box, and the label map ``item { name: "<query>" id: N }`` (ids from 1, in
  order of first appearance).
Coordinates are pixels of the video's own width × height; every file is written atomically
(temporary file in the same folder, then renamed).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import stg_cli
from stg_cli import files
from stg_cli.errors import UserError
from stg_cli.files import safe_name
from stg_cli.ground.spatial import FrameLocation
from stg_cli.ground.temporal import BACKGROUND_LABEL, TemporalDetection

BACKGROUND = "background"
COMBINED_NAME = "predictions.json"
EXPORT_FORMATS = ("activitynet", "ava")


@dataclass(frozen=True)
class VideoGrounding:
    """Everything ``stg ground`` found in one video.

    Attributes:
        video_id: the id (file stem or the id given in the query pools).
        width, height: original frame size in pixels (as displayed).
        fps: rate of the analysed frames.
        duration: video duration in seconds.
        queries: the pool, in similarity column order.
        times: float [F] analysed frame times in seconds.
        similarity: float [F, Q] frame × query cosines.
        detection: temporal labels, scores and segments.
        cells: float [F, gh, gw] per-frame cell probabilities of the predicted label (0 on
            background frames).
        locations: per frame the point and box, None on background frames.
    """

    video_id: str
    width: int
    height: int
    fps: float
    duration: float
    queries: list[str]
    times: np.ndarray
    similarity: np.ndarray
    detection: TemporalDetection
    cells: np.ndarray
    locations: Sequence[FrameLocation | None]

    def label(self, frame: int) -> str:
        """The predicted label of a frame: a query or "background"."""
        index = int(self.detection.labels[frame])
        return BACKGROUND if index == BACKGROUND_LABEL else self.queries[index]

    def to_prediction(self) -> dict:
        """The per-video JSON object (see the module docstring)."""
        frames = []
        for index, time in enumerate(np.asarray(self.times, dtype=np.float64).tolist()):
            location = self.locations[index]
            frames.append(
                {
                    "t": round(time, 6),
                    "label": self.label(index),
                    "score": _float(self.detection.scores[index]),
                    "point": None if location is None else list(location.point),
                    "box": None if location is None or location.box is None else list(location.box),
                }
            )
        return {
            "video": self.video_id,
            "width": int(self.width),
            "height": int(self.height),
            "fps": float(self.fps),
            "duration": float(self.duration),
            "queries": list(self.queries),
            "segments": [
                {
                    "label": self.queries[segment.query],
                    "start": round(segment.start, 6),
                    "end": round(segment.end, 6),
                    "score": _float(segment.score),
                }
                for segment in self.detection.segments
            ],
            "frames": frames,
            "heatmaps": heatmaps_name(self.video_id),
        }


def prediction_names(video_id: str) -> dict[str, str]:
    """The file names :func:`write_prediction` writes for ``video_id``: ``json`` and
    ``heatmaps``."""
    return {"json": f"{safe_name(video_id)}.json", "heatmaps": heatmaps_name(video_id)}


def heatmaps_name(video_id: str) -> str:
    """``<safe name>.heatmaps.npz``."""
    return f"{safe_name(video_id)}.heatmaps.npz"


def write_prediction(grounding: VideoGrounding, out: Path) -> dict:
    """Writes ``<name>.json`` and ``<name>.heatmaps.npz`` (:func:`prediction_names`) into
    ``out``; returns the JSON object."""
    out.mkdir(parents=True, exist_ok=True)
    prediction = grounding.to_prediction()
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        times=np.asarray(grounding.times, dtype=np.float32),
        cells=np.asarray(grounding.cells, dtype=np.float32),
        similarity=np.asarray(grounding.similarity, dtype=np.float32).reshape(
            len(grounding.times), len(grounding.queries)
        ),
        queries=np.asarray(grounding.queries, dtype=str),
    )
    names = prediction_names(grounding.video_id)
    files.write_bytes(out / names["heatmaps"], buffer.getvalue())
    files.write_json(out / names["json"], prediction, indent=1, allow_nan=False)
    return prediction


def write_combined(predictions: Mapping[str, dict], out: Path) -> Path:
    """Writes ``predictions.json`` ``{video_id: prediction}`` into ``out``; returns its path."""
    path = out / COMBINED_NAME
    files.write_json(path, dict(predictions), indent=1, allow_nan=False)
    return path


def _float(value: float) -> float:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else 0.0


def activitynet_detections(predictions: Mapping[str, dict]) -> dict:
    """The ActivityNet detection object of ``{video_id: prediction}`` (module docstring)."""

    return {
        "version": "VERSION 1.3",
        "results": {
            video: [
                {
                    "label": segment["label"],
                    "score": segment["score"],
                    "segment": [segment["start"], segment["end"]],
                }
                for segment in prediction["segments"]
            ]
            for video, prediction in predictions.items()
        },
        "external_data": {
            "used": True,
            "details": f"stg {stg_cli.__version__}: trained on narrated video, frozen pretrained "
            "visual features",
        },
    }


def ava_rows(predictions: Mapping[str, dict]) -> tuple[list[list], dict[str, int]]:
    """AVA-style rows and the label map (query → id from 1) of ``{video_id: prediction}``."""
    labels: dict[str, int] = {}
    rows = []
    for video, prediction in predictions.items():
        width, height = float(prediction["width"]), float(prediction["height"])
        for frame in prediction["frames"]:
            if frame["label"] == BACKGROUND or frame["box"] is None:
                continue
            x1, y1, x2, y2 = frame["box"]
            action = labels.setdefault(frame["label"], len(labels) + 1)
            rows.append(
                [
                    video,
                    f"{frame['t']:.3f}",
                    f"{x1 / width:.4f}",
                    f"{y1 / height:.4f}",
                    f"{x2 / width:.4f}",
                    f"{y2 / height:.4f}",
                    action,
                    f"{frame['score']:.6f}",
                ]
            )
    return rows, labels


def check_exports(formats: Sequence[str]) -> list[str]:
    """The export formats, each known (UserError otherwise), without repeats."""
    chosen = list(dict.fromkeys(name.strip().lower() for name in formats))
    unknown = [name for name in chosen if name not in EXPORT_FORMATS]
    if unknown:
        raise UserError(f"--export must be one of {', '.join(EXPORT_FORMATS)}, got {', '.join(unknown)}")
    return chosen


def write_exports(predictions: Mapping[str, dict], out: Path, formats: Sequence[str]) -> list[Path]:
    """Writes the files of each export format into ``out`` (module docstring); returns them."""
    import csv

    formats = check_exports(formats)
    written = []
    if "activitynet" in formats:
        path = out / "activitynet.json"
        files.write_json(path, activitynet_detections(predictions), indent=1, allow_nan=False)
        written.append(path)
    if "ava" in formats:
        rows, labels = ava_rows(predictions)
        table = io.StringIO()
        csv.writer(table, lineterminator="\n").writerows(rows)
        files.write_text(out / "ava.csv", table.getvalue())
        label_map = "".join(
            f'item {{\n  name: "{name.replace(chr(34), chr(39))}"\n  id: {index}\n}}\n'
            for name, index in labels.items()
        )
        files.write_text(out / "ava_labels.pbtxt", label_map)
        written += [out / "ava.csv", out / "ava_labels.pbtxt"]
    return written
