"""The pictures of one grounded video: its timeline figure and its overlay video, drawn from
the predictions and the video file."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from stg_cli.files import safe_name
from stg_cli.ground.output import VideoGrounding
from stg_cli.video import iter_clips, probe
from stg_cli.viz.overlay import render_overlay
from stg_cli.viz.timeline import plot_timeline

# the overlay plays at the video's rate up to this (a 120 fps phone video is drawn at 60)
MAX_OVERLAY_FPS = 60.0


def draw_grounding(
    grounding: VideoGrounding,
    video_path: Path | None,
    out: Path,
    on_step: Callable[[str, int, int], None] | None = None,
    ground_truth: Sequence | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Writes ``<name>.timeline.png`` and, from the video file, ``<name>.overlay.mp4`` into
    ``out``; returns the files written (kind → name) and notes on what was not.

    The overlay has the video's own frame rate (at most :data:`MAX_OVERLAY_FPS`) and duration;
    each frame shows the latest analysed frame's predictions (held, not interpolated).
    """
    name = safe_name(grounding.video_id)
    plot_timeline(grounding, out / f"{name}.timeline.png", ground_truth=ground_truth)
    files = {"timeline": f"{name}.timeline.png"}
    if video_path is None:
        return files, ["no overlay video: the video file was not given"]
    if len(grounding.times) == 0:
        return files, ["no overlay video: no frame was decoded"]
    source_fps = probe(video_path).fps
    fps = min(source_fps, MAX_OVERLAY_FPS) if source_fps else grounding.fps
    total = max(int(grounding.duration * fps), 1)
    counter = {"done": 0}
    step = on_step or (lambda stage, done, total: None)

    def on_frame() -> None:
        counter["done"] += 1
        step("overlay", counter["done"], max(total, counter["done"]))

    render_overlay(
        grounding, display_frames(video_path, fps), out / f"{name}.overlay.mp4", on_frame=on_frame, fps=fps
    )
    files["overlay"] = f"{name}.overlay.mp4"
    return files, []


def display_frames(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """``(time, frame uint8 [H, W, 3])`` at display size, on the ``k / fps`` grid."""
    for _, times, _, frames in iter_clips(path, fps, None, 1, fps, batch_size=8):
        for time_value, frame in zip(times.tolist(), frames[:, 0]):
            yield time_value, frame
