"""Order-preserving transcript alignment and the MiningYouTube IoU / IoD."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stg_cli.metrics.alignment import align_transcript, ground_truth_frame_labels, temporal_counts, transcript
from stg_cli.metrics.annotations import Segment


def test_order_beats_the_per_frame_best():
    # Frames × steps. Per frame the best choice would be [step 1, background, step 0], which
    # breaks the transcript order. Ordered labellings with each step at least once:
    #   [0, 1, bg] = .2 + .3 + .5 = 1.0   <- best
    #   [bg, 0, 1] = .5 + .1 + .1 = 0.7
    #   [0, bg, 1] = .2 + .5 + .1 = 0.8
    #   [0, 1, 1]  = .2 + .3 + .1 = 0.6
    #   [0, 0, 1]  = .2 + .1 + .1 = 0.4
    similarity = np.array([[0.2, 0.9], [0.1, 0.3], [0.9, 0.1]])
    assert align_transcript(similarity, tau=0.5).tolist() == [0, 1, -1]


def test_background_between_and_around_steps():
    # Step 0 is strong on frames 0-1, step 1 on frame 3; frames 2 and 4 score below tau = .5 for
    # any step, so they become background: .9 + .8 + .5 + .9 + .5 = 3.6.
    similarity = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.3], [0.2, 0.9], [0.1, 0.2]])
    assert align_transcript(similarity).tolist() == [0, 0, -1, 1, -1]
    # With tau = 0 background never pays: every frame takes a step, in order.
    assert align_transcript(similarity, tau=0.0).tolist() == [0, 0, 1, 1, 1]


def test_every_step_gets_a_frame_even_when_weak():
    similarity = np.array([[0.9, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, 0.0, 0.9], [0.0, 0.0, 0.9]])
    labels = align_transcript(similarity)
    assert sorted(set(labels.tolist()) - {-1}) == [0, 1, 2]


def test_too_few_frames_or_no_steps_give_background():
    assert align_transcript(np.ones((2, 3))).tolist() == [-1, -1]
    assert align_transcript(np.ones((4, 0))).tolist() == [-1] * 4


@pytest.mark.parametrize("bad", [np.ones(3), np.array([[np.nan]])])
def test_bad_similarity_is_a_value_error(bad):
    with pytest.raises(ValueError, match="similarity"):
        align_transcript(bad)


def brute_force_best(similarity, tau):
    """Best total over every ordered labelling (each step one contiguous run >= 1 frame)."""
    frames, steps = similarity.shape
    best = -np.inf
    # Choose 2K non-decreasing cut points: step k occupies [starts[k], ends[k]).
    for bounds in itertools.combinations_with_replacement(range(frames + 1), 2 * steps):
        starts, ends = bounds[0::2], bounds[1::2]
        if any(s >= e for s, e in zip(starts, ends)):
            continue
        labels = np.full(frames, -1)
        for k, (s, e) in enumerate(zip(starts, ends)):
            labels[s:e] = k
        best = max(best, total(similarity, labels, tau))
    return best


def total(similarity, labels, tau):
    return sum(tau if k < 0 else similarity[f, k] for f, k in enumerate(labels))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda steps: st.tuples(
            st.just(steps), st.integers(steps, 7), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0)
        )
    )
)
def test_alignment_is_optimal_and_ordered(case):
    steps, frames, seed, tau = case
    similarity = np.random.default_rng(seed).uniform(-1, 1, (frames, steps)).round(3)
    labels = align_transcript(similarity, tau)
    used = [k for k in labels.tolist() if k >= 0]
    runs = [k for k, _ in itertools.groupby(used)]
    assert runs == list(range(steps))  # every step once, in order, contiguous
    assert total(similarity, labels, tau) == pytest.approx(brute_force_best(similarity, tau))


def test_temporal_counts_hand_case():
    # G = [a, a, bg, b], D = [a, bg, b, b]: a: ∩ 1, ∪ 2; b: ∩ 1, ∪ 2 → IoU 2/4;
    # |D_a| + |D_b| = 1 + 2 → IoD 2/3.
    counts = temporal_counts(["a", "a", "background", "b"], ["a", "background", "b", "b"])
    assert (counts.intersection, counts.union, counts.detected) == (2, 4, 3)
    assert counts.iou == pytest.approx(0.5) and counts.iod == pytest.approx(2 / 3)
    nothing = temporal_counts(["a"], ["background"])
    assert nothing.iou == 0.0 and nothing.iod == 0.0


def test_frame_labels_half_open_and_inclusive():
    segments = [Segment("v", 1, 3, "a", 0), Segment("v", 3, 3, "z", 1), Segment("v", 5, 6, "b", 2)]
    times = np.arange(8)
    # Half-open: a owns 1, 2; the zero-length z owns nothing; b owns 5.
    assert ground_truth_frame_labels(times, segments, "half_open") == [
        "background",
        "a",
        "a",
        "background",
        "background",
        "b",
        "background",
        "background",
    ]
    # Inclusive (the default): a owns 1..3 (it starts first, so it wins second 3 over z), b 5, 6.
    assert ground_truth_frame_labels(times, segments) == [
        "background",
        "a",
        "a",
        "a",
        "background",
        "b",
        "b",
        "background",
    ]


def test_uniform_prior_splits_the_transcript_evenly():
    from stg_cli.metrics.annotations import DataDefects, GroundTruth
    from stg_cli.metrics.baselines import uniform_temporal

    # 8 frames, transcript a (0-3 s) then b (3-8 s): the prior gives a to frames 0-3, b to 4-7.
    # Half-open: a: G = {0,1,2}, D = {0,1,2,3} → ∩ 3, ∪ 4; b: G = {3..7}, D = {4..7} → ∩ 4,
    # ∪ 5. IoU = 7/9, IoD = 7/8. Inclusive: a owns 0-3 (it starts first), b 4-7: 100.
    segments = {"v": [Segment("v", 3, 8, "b", 1), Segment("v", 0, 3, "a", 0)]}
    truth = GroundTruth({}, segments, {}, {}, DataDefects(), "continuous")
    scores = uniform_temporal(truth, {"v": np.arange(8.0)}, "half_open")
    assert scores["iou"] == pytest.approx(100 * 7 / 9)
    assert scores["iod"] == pytest.approx(100 * 7 / 8)
    assert uniform_temporal(truth, {"v": np.arange(8.0)}) == {"iou": 100.0, "iod": 100.0}
    # a video without frame times scores 0
    assert uniform_temporal(truth, {})["iou"] == 0.0


def test_transcript_keeps_the_steps_that_own_a_frame():
    segments = [Segment("v", 5, 6, "b", 2), Segment("v", 3, 3, "z", 1), Segment("v", 1, 3, "a", 0)]
    times = np.arange(8)
    kept, dropped = transcript(times, segments)
    assert [s.label for s in kept] == ["a", "b"] and dropped == 1  # z lies inside a
    kept, dropped = transcript(times, segments, "half_open")
    assert [s.label for s in kept] == ["a", "b"] and dropped == 1  # z is zero-length
    kept, dropped = transcript(np.arange(3), segments)
    assert [s.label for s in kept] == ["a"] and dropped == 2  # b lies after the last frame
