"""Training sample geometry: which stored frames a caption's sample sees.

For a caption [start, end] (seconds):

1. the caption is widened to at least ``min_time`` seconds around its centre
   c = (start + end) / 2: [c − min_time/2, c + min_time/2] when it is shorter;
2. the window is U consecutive stored frames centred on the frame nearest c, so it covers the
   (widened) caption and, when the caption is shorter than U frames, its surroundings on both
   sides; near the start or end of the video the window is shifted to stay inside the video
   rather than padded, and a video shorter than U frames is padded at the end (index −1);
3. ``boundary`` = the first and last window positions whose frame time lies inside the widened
   caption (inclusive). A caption between two frames (low fps) gets the position nearest to c
   as both first and last.

A caption longer than U frames keeps its central U frames (boundary = the whole window).
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-6


def widen(start: float, end: float, min_time: float) -> tuple[float, float]:
    """``[start, end]`` widened symmetrically to at least ``min_time`` seconds."""
    if end - start >= min_time:
        return float(start), float(end)
    centre = (start + end) / 2.0
    return centre - min_time / 2.0, centre + min_time / 2.0


def candidate_window(
    frame_times: np.ndarray, start: float, end: float, num_frames: int, min_time: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``frame_times`` [U_total] of the U = ``num_frames`` candidate frames.

    Returns ``(indices int64 [U], boundary int64 [2])``: ``indices`` increase, −1 for padding;
    ``boundary`` holds the first and last window positions inside the widened caption (see the
    module docstring). With no stored frame at all, every index is −1 and boundary is [0, 0].
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
    if not end >= start:
        raise ValueError(f"caption end {end} is before its start {start}")
    times = np.asarray(frame_times, dtype=np.float64)
    total = len(times)
    indices = np.full(num_frames, -1, dtype=np.int64)
    if total == 0:
        return indices, np.zeros(2, dtype=np.int64)
    lo, hi = widen(float(start), float(end), float(min_time))
    centre = (lo + hi) / 2.0
    nearest = int(np.argmin(np.abs(times - centre)))
    first = nearest - (num_frames - 1) // 2
    first = min(max(first, 0), max(total - num_frames, 0))
    count = min(num_frames, total)
    indices[:count] = np.arange(first, first + count)
    window_times = times[indices[:count]]
    inside = np.nonzero((window_times >= lo - _EPS) & (window_times <= hi + _EPS))[0]
    if len(inside):
        boundary = np.array([inside[0], inside[-1]], dtype=np.int64)
    else:
        position = int(np.argmin(np.abs(window_times - centre)))
        boundary = np.array([position, position], dtype=np.int64)
    return indices, boundary
