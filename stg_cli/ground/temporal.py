"""Temporal detection: which query, if any, happens at each decoded frame, and its segments.

Input is the frame × query cosine matrix S [F, Q] (cos(f(frame), g(query)), F frames in time
order, Q queries). Rules:

1. Per frame, the best query wins if its cosine is ≥ τ (``tau``, default 0.5); otherwise the frame
   is background (label -1).
2. Smoothing (``smooth`` = w frames, default 3; 0 or 1 turns it off; w must be odd): a majority
   filter over a centred window of w frames (shorter at the ends of the video) relabels each frame
   with the most frequent label around it, background included. Ties go to the tied label with the
   highest cosine summed over the window, background counting τ per frame. With w = 3 a one-frame
   flicker between two runs disappears and a one-frame gap inside a run is filled.
3. Runs of consecutive frames with the same non-background label form segments. A segment spans
   the times of its first and last frame (inclusive frames, as the refined GroundingYouTube
   segments at 1 fps: a one-frame segment has start == end); its score is the mean cosine of its
   label over its frames.

Per-frame scores: a query frame scores its label's cosine; a background frame scores the highest
query cosine at that frame (what fell short of τ, or was outvoted by the filter).

Trimmed grounding (:func:`given_segments`) skips rules 1–2: the labels come from known spans
(query, start, end), e.g. ground-truth segments, so that only *where* is predicted. A frame whose
time t satisfies start ≤ t ≤ end takes the span's query (a later span wins where spans overlap);
rule 3 and the per-frame scores are as above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stg_cli.defaults import DEFAULT_SMOOTH, DEFAULT_TAU
from stg_cli.errors import UserError

BACKGROUND_LABEL = -1


@dataclass(frozen=True)
class DetectedSegment:
    """One run of frames with the same query.

    Attributes:
        query: column of the query in the similarity matrix.
        first, last: indices of the run's first and last frame (inclusive).
        start, end: their times in seconds.
        score: mean cosine of the query over the run's frames.
    """

    query: int
    first: int
    last: int
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class TemporalDetection:
    """Per-frame labels and the segments they form.

    Attributes:
        labels: int64 [F], the query column per frame or -1 for background.
        scores: float32 [F], see the module docstring.
        segments: runs in time order.
    """

    labels: np.ndarray
    scores: np.ndarray
    segments: list[DetectedSegment]


def check_smooth(smooth: int) -> int:
    """``smooth`` if it is a valid window (0, 1 or an odd number ≥ 3).

    Raises:
        UserError: otherwise.
    """
    if smooth < 0 or (smooth > 1 and smooth % 2 == 0):
        raise UserError(f"--smooth must be 0 (off) or an odd number of frames, got {smooth}")
    return smooth


def frame_labels(
    similarity: np.ndarray, tau: float = DEFAULT_TAU, allowed: np.ndarray | None = None
) -> np.ndarray:
    """Best query per frame if its cosine is ≥ ``tau``, else -1. similarity [F, Q] → int64 [F].

    ``allowed`` bool [Q]: queries that may be detected (others never win); None: all.
    """
    similarity = _check_similarity(similarity)
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (similarity.shape[1],):
            raise ValueError(f"allowed must have shape [{similarity.shape[1]}], got {allowed.shape}")
        similarity = np.where(allowed[None, :], similarity, -np.inf)
    if similarity.shape[1] == 0 or (allowed is not None and not allowed.any()):
        return np.full(similarity.shape[0], BACKGROUND_LABEL, dtype=np.int64)
    best = similarity.argmax(axis=1)
    best_score = similarity[np.arange(similarity.shape[0]), best]
    return np.where(best_score >= tau, best, BACKGROUND_LABEL).astype(np.int64)


def majority_filter(
    labels: np.ndarray, similarity: np.ndarray, window: int, tau: float = DEFAULT_TAU
) -> np.ndarray:
    """Majority filter of ``labels`` int64 [F] over centred windows of ``window`` frames.

    Ties are broken by the cosine summed over the window (background: τ per frame).
    ``window`` ≤ 1 returns a copy.
    """
    labels = np.asarray(labels, dtype=np.int64)
    window = check_smooth(window)
    frames = labels.shape[0]
    if window <= 1 or frames == 0:
        return labels.copy()
    similarity = _check_similarity(similarity)
    classes = similarity.shape[1] + 1  # the last class is background
    index = np.where(labels == BACKGROUND_LABEL, classes - 1, labels)
    one_hot = np.zeros((frames, classes), dtype=np.int64)
    one_hot[np.arange(frames), index] = 1
    evidence = np.concatenate(
        [similarity.astype(np.float64), np.full((frames, 1), tau, dtype=np.float64)], axis=1
    )
    counts = _window_sums(one_hot, window)
    sums = _window_sums(evidence, window)
    tied = counts == counts.max(axis=1, keepdims=True)
    winner = np.where(tied, sums, -np.inf).argmax(axis=1)
    return np.where(winner == classes - 1, BACKGROUND_LABEL, winner).astype(np.int64)


def detect(
    similarity: np.ndarray,
    times: np.ndarray,
    tau: float = DEFAULT_TAU,
    smooth: int = DEFAULT_SMOOTH,
    allowed: np.ndarray | None = None,
) -> TemporalDetection:
    """Labels, scores and segments of a video (see the module docstring).

    Args:
        similarity: float [F, Q] frame × query cosines.
        times: float [F] frame times in seconds, increasing.
        tau: detection threshold on the cosine.
        smooth: majority-filter window in frames (0/1: off).
        allowed: bool [Q], queries that may be detected (None: all); the pipeline excludes
            queries the text encoder has no word of.
    """
    similarity = _check_similarity(similarity)
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (similarity.shape[0],):
        raise ValueError(f"times must have shape [{similarity.shape[0]}], got {times.shape}")
    labels = majority_filter(frame_labels(similarity, tau, allowed), similarity, smooth, tau)
    return _detection(labels, similarity, times)


def given_segments(
    similarity: np.ndarray, times: np.ndarray, spans: Sequence[tuple[int, float, float]]
) -> TemporalDetection:
    """Labels, scores and segments from known spans instead of detection (trimmed grounding).

    Args:
        similarity: float [F, Q] frame × query cosines (for the scores).
        times: float [F] frame times in seconds, increasing.
        spans: (query column, start, end) in seconds, inclusive; a span holding no frame time
            gives no segment.

    Example: times [0, 1, 2, 3] and the span (0, 1.0, 2.0) label frames 1 and 2 with query 0.
    """
    similarity = _check_similarity(similarity)
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (similarity.shape[0],):
        raise ValueError(f"times must have shape [{similarity.shape[0]}], got {times.shape}")
    labels = np.full(similarity.shape[0], BACKGROUND_LABEL, dtype=np.int64)
    for query, start, end in spans:
        if not 0 <= query < similarity.shape[1]:
            raise ValueError(f"span query {query} is not a column of the {similarity.shape[1]} queries")
        labels[(times >= start) & (times <= end)] = query
    return _detection(labels, similarity, times)


def _detection(labels: np.ndarray, similarity: np.ndarray, times: np.ndarray) -> TemporalDetection:
    """Per-frame scores and segments of final labels (see the module docstring)."""
    frames = similarity.shape[0]
    scores = np.zeros(frames, dtype=np.float32)
    if similarity.shape[1] > 0 and frames > 0:
        picked = similarity[np.arange(frames), np.maximum(labels, 0)]
        scores = np.where(labels >= 0, picked, similarity.max(axis=1)).astype(np.float32)
    return TemporalDetection(labels=labels, scores=scores, segments=_runs(labels, similarity, times))


def _runs(labels: np.ndarray, similarity: np.ndarray, times: np.ndarray) -> list[DetectedSegment]:
    segments: list[DetectedSegment] = []
    if labels.size == 0:
        return segments
    boundaries = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [labels.size]]) - 1
    for first, last in zip(starts.tolist(), ends.tolist()):
        query = int(labels[first])
        if query == BACKGROUND_LABEL:
            continue
        segments.append(
            DetectedSegment(
                query=query,
                first=first,
                last=last,
                start=float(times[first]),
                end=float(times[last]),
                score=float(similarity[first : last + 1, query].mean()),
            )
        )
    return segments


def _window_sums(values: np.ndarray, window: int) -> np.ndarray:
    """Sums over centred windows of ``window`` rows (truncated at the ends). [F, C] → [F, C]."""
    half = window // 2
    frames = values.shape[0]
    padded = np.concatenate([np.zeros((1, values.shape[1]), values.dtype), values]).cumsum(axis=0)
    upper = np.minimum(np.arange(frames) + half + 1, frames)
    lower = np.maximum(np.arange(frames) - half, 0)
    return padded[upper] - padded[lower]


def _check_similarity(similarity: np.ndarray) -> np.ndarray:
    similarity = np.asarray(similarity)
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be [frames, queries], got shape {similarity.shape}")
    if not np.isfinite(similarity).all():
        raise ValueError("similarity holds NaN or inf")
    return similarity
