"""Temporal detection: thresholding, the majority filter and segments."""

from __future__ import annotations

import numpy as np
import pytest

from stg_cli.errors import UserError
from stg_cli.ground.temporal import detect, frame_labels, given_segments, majority_filter


def _similarity(labels: list[int], queries: int = 2, high: float = 0.8, low: float = 0.1):
    similarity = np.full((len(labels), queries), low, dtype=np.float32)
    for frame, label in enumerate(labels):
        if label >= 0:
            similarity[frame, label] = high
    return similarity


def test_best_query_above_tau_else_background():
    similarity = np.array([[0.6, 0.2], [0.4, 0.49], [0.5, 0.7], [0.1, 0.1]])
    assert frame_labels(similarity, tau=0.5).tolist() == [0, -1, 1, -1]
    assert frame_labels(similarity, tau=0.4).tolist() == [0, 1, 1, -1]


def test_no_queries_means_all_background():
    assert frame_labels(np.zeros((4, 0)), 0.5).tolist() == [-1] * 4


def test_majority_filter_removes_flicker_and_fills_gaps():
    labels = np.array([0, 0, 1, 0, 0, -1, -1, 0, -1, -1])
    similarity = _similarity(labels.tolist())
    smoothed = majority_filter(labels, similarity, 3)
    assert smoothed.tolist() == [0, 0, 0, 0, 0, -1, -1, -1, -1, -1]


def test_majority_filter_tie_goes_to_the_highest_summed_cosine():
    labels = np.array([0, 1, -1])
    similarity = np.array([[0.9, 0.0], [0.0, 0.6], [0.2, 0.2]])
    # window at frame 1 holds one of each: sums 0.9+0.0+0.2 (q0), 0.0+0.6+0.2 (q1), 3τ=1.5 (bg)
    assert majority_filter(labels, similarity, 3, tau=0.5)[1] == -1
    assert majority_filter(labels, similarity, 3, tau=0.1)[1] == 0


@pytest.mark.parametrize("window", [0, 1])
def test_smoothing_off(window):
    labels = np.array([0, 1, 0, -1])
    assert majority_filter(labels, _similarity(labels.tolist()), window).tolist() == labels.tolist()


@pytest.mark.parametrize("window", [-1, 2, 4])
def test_bad_window_is_a_user_error(window):
    with pytest.raises(UserError, match="smooth"):
        majority_filter(np.zeros(3, dtype=np.int64), np.zeros((3, 1)), window)


def test_segments_are_runs_with_mean_cosine():
    labels = [-1, 0, 0, 0, -1, -1, 1, 1, -1, 0]
    similarity = _similarity(labels)
    similarity[2, 0] = 0.6
    times = np.arange(10, dtype=np.float64) + 0.0
    detection = detect(similarity, times, tau=0.5, smooth=0)
    spans = [(s.query, s.first, s.last, s.start, s.end) for s in detection.segments]
    assert spans == [(0, 1, 3, 1.0, 3.0), (1, 6, 7, 6.0, 7.0), (0, 9, 9, 9.0, 9.0)]
    assert detection.segments[0].score == pytest.approx((0.8 + 0.6 + 0.8) / 3)
    assert detection.scores[0] == pytest.approx(0.1)  # background: the best cosine
    assert detection.scores[2] == pytest.approx(0.6)


def test_segments_do_not_overlap_and_stay_inside(generator=None):
    rng = np.random.default_rng(0)
    similarity = rng.uniform(-0.2, 1.0, size=(200, 5))
    times = np.arange(200) * 0.5
    detection = detect(similarity, times, tau=0.6, smooth=5)
    previous_end = -1.0
    for segment in detection.segments:
        assert times[0] <= segment.start <= segment.end <= times[-1]
        assert segment.start > previous_end
        previous_end = segment.end
        assert (detection.labels[segment.first : segment.last + 1] == segment.query).all()


def test_empty_video():
    detection = detect(np.zeros((0, 3)), np.zeros(0), smooth=3)
    assert detection.segments == [] and detection.labels.shape == (0,)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        detect(np.zeros((3,)), np.zeros(3))
    with pytest.raises(ValueError):
        detect(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError):
        detect(np.full((3, 2), np.nan), np.zeros(3))


def test_disallowed_queries_never_win():
    similarity = np.array([[0.9, 0.6], [0.9, 0.1], [0.2, 0.3]])
    detection = detect(similarity, np.arange(3.0), tau=0.0, smooth=0, allowed=np.array([False, True]))
    assert detection.labels.tolist() == [1, 1, 1]
    none = detect(similarity, np.arange(3.0), tau=0.0, smooth=3, allowed=np.array([False, False]))
    assert none.labels.tolist() == [-1, -1, -1] and none.segments == []


def test_given_segments_label_the_frames_inside_each_span():
    # cosines are all low: detection would find nothing, the given spans label frames anyway
    similarity = _similarity([-1] * 6, queries=2, low=0.1)
    similarity[2, 1] = 0.3
    times = np.arange(6, dtype=np.float64)
    detection = given_segments(similarity, times, [(1, 1.0, 2.0), (0, 4.0, 4.5)])
    assert detection.labels.tolist() == [-1, 1, 1, -1, 0, -1]
    assert [(s.query, s.first, s.last) for s in detection.segments] == [(1, 1, 2), (0, 4, 4)]
    # mean cosine of query 1 over frames 1-2: (0.1 + 0.3) / 2
    assert detection.segments[0].score == pytest.approx(0.2)
    assert detection.scores[2] == pytest.approx(0.3)


def test_given_span_without_a_frame_gives_no_segment_and_bad_query_raises():
    similarity = _similarity([-1] * 3)
    times = np.array([0.0, 1.0, 2.0])
    assert given_segments(similarity, times, [(0, 1.2, 1.8)]).segments == []
    with pytest.raises(ValueError, match="not a column"):
        given_segments(similarity, times, [(5, 0.0, 1.0)])
