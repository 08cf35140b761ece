"""Pointing game, IoU+Point, spatial accuracy/AP and predicted tubes on hand-computed cases."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stg_cli.metrics.annotations import FrameBox, Segment
from stg_cli.metrics.geometry import point_in_box
from stg_cli.metrics.grounding import (
    ForegroundSecond,
    FramePrediction,
    Rate,
    foreground_predictions,
    frame_predictions,
    ground_truth_foreground,
    iou_point,
    pointing_game,
    predicted_tubes,
    spatial_accuracy,
    spatial_ap,
    spatial_records,
)
from stg_cli.metrics.predictions import parse_prediction

BOX = (0.0, 0.0, 9.0, 9.0)


def guess(label="cut", point=None, box=None, score=1.0):
    return FramePrediction(label, score, point, box)


def test_pointing_game_exact_and_tolerant():
    truth = [FrameBox(1, BOX, "cut"), FrameBox(2, BOX, "cut"), FrameBox(3, BOX, "cut")]
    # (9, 9) is on the inclusive corner: hit. (12, 5) is 3 px right of x2 = 9: miss, but within
    # 15 px. The third frame has no prediction: a miss either way. Exact 1/3, tolerant 2/3.
    guesses = [guess(point=(9, 9)), guess(point=(12, 5)), None]
    assert pointing_game(truth, guesses) == Rate(1, 3)
    assert pointing_game(truth, guesses, tolerance=15) == Rate(2, 3)
    assert pointing_game(truth, guesses).percent == pytest.approx(100 / 3)


def test_pointing_game_label_check_is_optional():
    truth = [FrameBox(1, BOX, "cut")]
    wrong_label = [guess(label="stir", point=(5, 5))]
    assert pointing_game(truth, wrong_label) == Rate(1, 1)
    assert pointing_game(truth, wrong_label, require_label=True) == Rate(0, 1)


def test_iou_point_hand_case():
    # Ground truth foreground {1, 2, 4}; predicted foreground {1, 2, 3}.
    # 1: right label, point inside → correct; 2: wrong label; 3: no ground truth; 4: missed.
    # Correct 1, union {1, 2, 3, 4} = 4 → 25 %.
    truth = ground_truth_foreground(
        [FrameBox(1, BOX, "cut"), FrameBox(2, BOX, "cut"), FrameBox(4, BOX, "stir")], []
    )
    predicted = {
        1: guess(point=(5, 5)),
        2: guess(label="stir", point=(5, 5)),
        3: guess(label="stir", point=(5, 5)),
    }
    assert iou_point(truth, predicted) == Rate(1, 4)
    assert iou_point(truth, {}) == Rate(0, 3)
    assert iou_point({}, {}) == Rate(0, 0) and Rate(0, 0).percent == 0.0


def test_segment_seconds_without_a_box_are_foreground_judged_by_label_only():
    # "cut" holds 1-4 with boxes at 1 and 2; "stir" holds 4-5 with no box; 4 is in both.
    frames = [FrameBox(1, BOX, "cut"), FrameBox(2, BOX, "cut")]
    segments = [Segment("v", 1, 4, "cut", 0), Segment("v", 4, 5, "stir", 1)]
    truth = ground_truth_foreground(frames, segments)
    assert list(truth) == [1, 2, 3, 4, 5]
    assert truth[1] == ForegroundSecond(frozenset({"cut"}), BOX)
    assert truth[3] == ForegroundSecond(frozenset({"cut"}), None)
    assert truth[4].labels == {"cut", "stir"} and truth[4].box is None
    predicted = {
        1: guess(point=(50, 50)),  # right label, point outside the box → wrong
        2: guess(point=(5, 5)),  # correct
        3: guess(point=None),  # no box there: the label decides → correct
        4: guess(label="stir", point=(99, 99)),  # either step of the two segments → correct
        5: guess(label="cut", point=(5, 5)),  # wrong step
    }
    assert iou_point(truth, predicted) == Rate(3, 5)
    assert list(ground_truth_foreground(frames, segments, skipped={2, 3})) == [1, 4, 5]


def test_spatial_accuracy_and_ap_hand_case():
    truth = [FrameBox(s, BOX, "cut") for s in (1, 2, 3)] + [FrameBox(4, BOX, "stir")]
    guesses = [
        guess(box=BOX, score=0.9),  # IoU 1 → hit
        guess(box=(5, 5, 14, 14), score=0.8),  # IoU 25/175 = 0.14 → miss
        guess(point=(1, 1), score=0.7),  # no box → miss, not ranked
        guess(box=(0, 0, 9, 4), score=0.5),  # IoU 50/100 = 0.5 > 0.3 → hit
    ]
    records = spatial_records(truth, guesses)
    assert [record.hit for record in records] == [True, False, False, True]
    assert spatial_accuracy(records) == Rate(2, 4)
    # cut: ranked .9 hit, .8 miss; 3 positives → P = [1, 1/2], R = [1/3, 1/3]; all-point AP =
    # 1/3 · 1 = 1/3. stir: one hit of one positive → 1.
    assert spatial_ap(records) == pytest.approx({"cut": 1 / 3, "stir": 1.0})
    # The threshold is strict: IoU exactly 0.5 is not > 0.5.
    assert not spatial_records(truth[3:], guesses[3:], threshold=0.5)[0].hit


def prediction_with(frames, segments):
    value = {"video": "v", "width": 100, "height": 100, "segments": segments, "frames": frames}
    return parse_prediction(value, Path("p.json"), "p")


def test_predicted_tubes_take_matching_frames_with_boxes():
    frames = [
        {"t": 1, "label": "cut", "score": 1, "box": [0, 0, 9, 9]},
        {"t": 2, "label": "cut", "score": 1, "point": [1, 1]},  # no box: left out
        {"t": 3, "label": "stir", "score": 1, "box": [5, 5, 9, 9]},  # other label: left out
        {"t": 4, "label": "cut", "score": 1, "box": [1, 1, 9, 9]},
        {"t": 5, "label": "cut", "score": 1, "box": [2, 2, 9, 9]},  # after the end: left out
    ]
    segments = [
        {"label": "cut", "start": 0.5, "end": 4.5, "score": 0.7},
        {"label": "background", "start": 5, "end": 6, "score": 0.1},
    ]
    (tube,) = predicted_tubes(prediction_with(frames, segments))
    assert (tube.label, tube.score) == ("cut", 0.7)
    assert tube.regions == {1: (0, 0, 9, 9), 4: (1, 1, 9, 9)}
    assert predicted_tubes(None) == []


def test_frame_and_foreground_lookup():
    frames = [
        {"t": 0, "label": "background", "score": 0},
        {"t": 1.2, "label": "cut", "score": 1, "point": [3, 4]},
    ]
    prediction = prediction_with(frames, [])
    looked_up = frame_predictions(prediction, [0, 1, 3])
    assert looked_up[0].label == "background" and looked_up[1].point == (3, 4)
    assert looked_up[2] is None
    assert list(foreground_predictions(prediction)) == [1]
    assert frame_predictions(None, [1, 2]) == [None, None]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-5, 30), min_size=4, max_size=4),
    st.tuples(st.integers(-10, 40), st.integers(-10, 40)),
    st.sampled_from([0, 15]),
)
def test_pointing_game_agrees_with_point_in_box(box, point, tolerance):
    frame = FrameBox(0, tuple(float(v) for v in box), "cut")
    expected = point_in_box(point, frame.box, tolerance)
    assert pointing_game([frame], [guess(point=point)], tolerance) == Rate(int(expected), 1)


def test_records_need_equal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        pointing_game([FrameBox(0, BOX, "a")], [])
    with pytest.raises(ValueError, match="equal lengths"):
        spatial_records([], [None])
    assert np.isclose(Rate(1, 2).percent, 50.0)
