"""The timeline figure of ``stg ground --viz``: query × time similarity with the segments.

Top panel: the frame × query cosine matrix as an image (queries as rows, time in seconds along
x, ``viridis``), each predicted segment outlined in white on its query's row. Bottom panel: one
track of the predicted segments and, when ground truth is given, one track of the ground-truth
segments, coloured per query (the overlay video uses the same colours). Written with
matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stg_cli import files
from stg_cli.ground.output import VideoGrounding
from stg_cli.viz.overlay import query_colors


@dataclass(frozen=True)
class TruthSegment:
    """A ground-truth segment in seconds (inclusive frame times, as predictions)."""

    label: str
    start: float
    end: float


def plot_timeline(
    grounding: VideoGrounding, path: Path, ground_truth: Sequence[TruthSegment] | None = None, dpi: int = 110
) -> Path:
    """Draws the timeline PNG of one video to ``path`` (atomically); returns ``path``."""
    import io

    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    queries = list(grounding.queries)
    count = max(len(queries), 1)
    colors = query_colors(count) / 255.0
    times = np.asarray(grounding.times, dtype=np.float64)
    step = 1.0 / max(grounding.fps, 1e-6)
    span_end = max(float(grounding.duration or 0.0), float(times[-1]) + step if times.size else 1.0)
    similarity = np.asarray(grounding.similarity, dtype=np.float32).reshape(times.size, len(queries))

    height = 1.6 + 0.28 * count + (0.9 if ground_truth else 0.6)
    figure = Figure(figsize=(11, height), dpi=dpi)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[max(count, 2), 2 if ground_truth else 1])
    image = np.full((count, max(times.size, 1)), np.nan, dtype=np.float32)
    if times.size and queries:
        image[:, :] = similarity.T
    first = float(times[0]) if times.size else 0.0
    last = float(times[-1]) + step if times.size else span_end
    shown = top.imshow(
        image,
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        extent=(first, last, count - 0.5, -0.5),
        vmin=float(np.nanmin(image)) if np.isfinite(image).any() else 0.0,
        vmax=float(np.nanmax(image)) if np.isfinite(image).any() else 1.0,
    )
    for segment in grounding.detection.segments:
        top.add_patch(
            Rectangle(
                (segment.start, segment.query - 0.5),
                segment.end - segment.start + step,
                1.0,
                fill=False,
                edgecolor="white",
                linewidth=1.5,
            )
        )
    top.set_yticks(range(len(queries)), [_short(query) for query in queries], fontsize=8)
    top.set_title(f"{grounding.video_id}: query × time similarity and predicted segments", fontsize=10)

    tracks = [("predicted", [(s.query, s.start, s.end) for s in grounding.detection.segments])]
    if ground_truth:
        index = {query: position for position, query in enumerate(queries)}
        tracks.append(("ground truth", [(index.get(s.label, -1), s.start, s.end) for s in ground_truth]))
    for row, (_, segments) in enumerate(tracks):
        bottom.broken_barh([(0.0, span_end)], (row - 0.4, 0.8), facecolors=(0.85, 0.85, 0.85))
        for query, start, end in segments:
            color = colors[query] if query >= 0 else (0.3, 0.3, 0.3)
            bottom.broken_barh([(start, end - start + step)], (row - 0.4, 0.8), facecolors=color)
    bottom.set_yticks(range(len(tracks)), [name for name, _ in tracks], fontsize=8)
    bottom.set_ylim(len(tracks) - 0.5, -0.5)
    bottom.set_xlim(0.0, span_end)
    bottom.set_xlabel("time (s)")
    figure.subplots_adjust(left=0.17, right=0.9, top=1 - 0.35 / height, bottom=0.5 / height, hspace=0.15)
    position = top.get_position()
    colorbar_axes = figure.add_axes((0.915, position.y0, 0.012, position.height))
    figure.colorbar(shown, cax=colorbar_axes, label="cosine")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    files.write_bytes(path, buffer.getvalue())
    return path


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
