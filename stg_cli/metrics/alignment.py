"""Temporal grounding with a known transcript: order-preserving alignment, IoU and IoD.

**Alignment.** A video has F frames and an ordered list of K steps (its transcript) and a
similarity matrix S [F, K] (frame × step). Each frame is labelled with a step or background so
that:

- the steps appear in transcript order, each as one contiguous run of at least one frame;
- any number of background frames (zero included) may come before, between and after them;
- the total score is maximal, where a frame labelled with step k scores S[f, k] and a
  background frame scores ``tau`` (default 0.5, the paper's detection threshold).

It is a Viterbi pass over the 2K + 1 states background₀, step₀, background₁, …, step_{K-1},
background_K: a frame stays in its state or moves to the next one, and a step may follow the
previous step directly (skipping the background between them). Ties are broken towards
staying, then towards the nearer state. With fewer frames than steps no such labelling exists;
``align_transcript`` then returns background everywhere (the caller reports it).

**Scores** (per video, over the non-background labels c, with G_c the frames whose ground-truth
label is c and D_c those labelled c by the alignment):
IoU = Σ_c |G_c ∩ D_c| / Σ_c |G_c ∪ D_c| and IoD = Σ_c |G_c ∩ D_c| / Σ_c |D_c| (0 when the
denominator is 0). A frame at time t has the ground-truth label of the segment [start, end]
owning it: ``ranges="inclusive"`` (default, start <= t <= end: the annotations' integer seconds
are whole seconds, as the authors' code reads them) or ``"half_open"`` (start <= t < end, which
drops a segment's last second: 18 % of MiningYouTube's ground-truth frames, and every
zero-length segment); background elsewhere; where segments overlap the earliest-starting one
wins (then the earlier-ending, then the lower id; :func:`frame_owners`).

**Transcript.** The steps that own at least one frame, by start time. A step that owns none
(under ``"inclusive"``: one whose seconds all lie inside an earlier-starting segment) has no
ground truth to be found in, and the alignment, which gives every step a frame, would have to
take one from another step; it is left out and counted (:func:`transcript`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stg_cli.metrics.annotations import BACKGROUND, Segment
from stg_cli.metrics.geometry import check_choice

FRAME_RANGES = ("inclusive", "half_open")
DEFAULT_TAU = 0.5

_STAY, _NEXT, _SKIP = 0, 1, 2


@dataclass(frozen=True)
class TemporalCounts:
    """Frame counts of one video summed over labels: Σ|G∩D|, Σ|G∪D|, Σ|D|."""

    intersection: int
    union: int
    detected: int

    @property
    def iou(self) -> float:
        return self.intersection / self.union if self.union else 0.0

    @property
    def iod(self) -> float:
        return self.intersection / self.detected if self.detected else 0.0


def align_transcript(similarity: np.ndarray, tau: float = DEFAULT_TAU) -> np.ndarray:
    """Step index per frame (-1 for background): the best ordered labelling (module docstring).

    Args:
        similarity: [F, K] frame × step scores, steps in transcript order.
        tau: the score of a background frame.

    Returns:
        [F] int64; all -1 when K == 0 or F < K.

    Example: S = [[.2, .9], [.1, .3], [.9, .1]], tau .5 gives [0, 1, -1] (score .2 + .3 + .5
    = 1.0), not the unordered per-frame best [1, -1, 0].
    """
    matrix = np.asarray(similarity, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"similarity must be [F, K], got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("similarity must be finite")
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not np.isfinite(tau):
        raise ValueError(f"tau must be a finite number, got {tau!r}")
    frames, steps = matrix.shape
    labels = np.full(frames, -1, dtype=np.int64)
    if steps == 0 or frames < steps:
        return labels
    states = 2 * steps + 1
    emission = np.full((frames, states), float(tau))
    emission[:, 1::2] = matrix
    is_step = np.zeros(states, dtype=bool)
    is_step[1::2] = True
    best = np.full(states, -np.inf)
    best[:2] = emission[0, :2]
    moves = np.zeros((frames, states), dtype=np.int8)
    for frame in range(1, frames):
        stay = best
        advance = np.concatenate(([-np.inf], best[:-1]))
        skip = np.where(is_step, np.concatenate(([-np.inf, -np.inf], best[:-2])), -np.inf)
        choice = np.stack([stay, advance, skip])
        moves[frame] = np.argmax(choice, axis=0)  # first maximum: stay, then next, then skip
        best = choice.max(axis=0) + emission[frame]
    state = states - 2 if best[states - 2] > best[states - 1] else states - 1
    for frame in range(frames - 1, -1, -1):
        labels[frame] = (state - 1) // 2 if is_step[state] else -1
        state -= int(moves[frame, state])
    return labels


def frame_owners(times: np.ndarray, segments: Sequence[Segment], ranges: str = "inclusive") -> np.ndarray:
    """The index in ``segments`` of the segment owning each frame time of ``times`` [F], -1 for
    none → int64 [F] (see the module docstring)."""
    check_choice(ranges, FRAME_RANGES, "ranges")
    times = np.asarray(times, dtype=np.float64)
    owners = np.full(times.shape, -1, dtype=np.int64)
    priority = sorted(range(len(segments)), key=lambda index: _order_key(segments[index]), reverse=True)
    for index in priority:
        segment = segments[index]
        end_ok = times <= segment.end if ranges == "inclusive" else times < segment.end
        owners[(times >= segment.start) & end_ok] = index
    return owners


def ground_truth_frame_labels(
    times: np.ndarray, segments: Sequence[Segment], ranges: str = "inclusive"
) -> list[str]:
    """The ground-truth label of each frame time in ``times`` [F] (``"background"`` outside)."""
    owners = frame_owners(times, segments, ranges)
    return [BACKGROUND if owner < 0 else segments[owner].label or BACKGROUND for owner in owners]


def transcript(
    times: np.ndarray, segments: Sequence[Segment], ranges: str = "inclusive"
) -> tuple[list[Segment], int]:
    """The video's transcript on frames ``times`` [F]: its segments that own a frame, by start
    (then end, then id), and how many were left out for owning none."""
    ordered = sorted(segments, key=_order_key)
    owned = set(frame_owners(times, ordered, ranges).tolist())
    kept = [segment for index, segment in enumerate(ordered) if index in owned]
    return kept, len(ordered) - len(kept)


def _order_key(segment: Segment) -> tuple:
    """Transcript order, and precedence where segments overlap: start, then end, then id."""
    return (segment.start, segment.end, segment.id or 0)


def temporal_counts(ground_truth: Sequence[str], predicted: Sequence[str]) -> TemporalCounts:
    """Σ_c |G_c ∩ D_c|, Σ_c |G_c ∪ D_c| and Σ_c |D_c| over the non-background labels.

    Example: G = [a, a, bg, b], D = [a, bg, b, b]: a gives ∩ 1, ∪ 2; b gives ∩ 1, ∪ 2; so
    IoU = 2/4 and IoD = 2/3 (|D_a| + |D_b| = 1 + 2).
    """
    if len(ground_truth) != len(predicted):
        raise ValueError(
            f"ground_truth and predicted must have equal lengths, got {len(ground_truth)} "
            f"and {len(predicted)}"
        )
    intersection = sum(1 for g, d in zip(ground_truth, predicted) if g == d and g != BACKGROUND)
    truth = sum(1 for g in ground_truth if g != BACKGROUND)
    detected = sum(1 for d in predicted if d != BACKGROUND)
    return TemporalCounts(intersection, truth + detected - intersection, detected)
