import pytest

from stg_cli.metrics import ScoredSegment, ap_from_precision_recall, average_precision, temporal_detection_ap

GROUND_TRUTH = {"v1": [[10, 20], [40, 50]], "v2": [[0, 5]]}
DETECTIONS = [
    ScoredSegment("v1", (11, 21), 0.9),
    ScoredSegment("v1", (38, 52), 0.8),
    ScoredSegment("v2", (30, 35), 0.7),
    ScoredSegment("v2", (0, 4), 0.6),
]


def test_all_point_golden():
    # The table rounds 2/3 to .667; the golden 0.8333 is for the exact ranking value.
    assert round(ap_from_precision_recall([1, 1, 0.5, 2 / 3], [0, 0.5, 0.5, 1]), 4) == 0.8333


def test_average_precision_from_ranking():
    # TP, FP, TP with 2 positives: P=[1, .5, .667], R=[.5, .5, 1] → .5·1 + .5·.667.
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_average_precision_sorts_by_score():
    assert average_precision([0.7, 0.9, 0.8], [True, True, False], 2) == pytest.approx(
        average_precision([0.9, 0.8, 0.7], [True, False, True], 2)
    )


def test_perfect_and_missed_positives():
    assert average_precision([0.9, 0.8], [True, True], 2) == 1.0
    assert average_precision([0.9, 0.8], [True, True], 4) == pytest.approx(0.5)


def test_trapezoid():
    # Points (0, 1), (.5, 1), (.5, .5), (1, .667): .5·1 + 0 + .5·(.5 + .667)/2.
    value = ap_from_precision_recall([1, 1, 0.5, 2 / 3], [0, 0.5, 0.5, 1], interpolation="trapezoid")
    assert value == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert average_precision([0.9, 0.8], [True, True], 2, interpolation="trapezoid") == 1.0


def test_empty_predictions_give_zero():
    assert average_precision([], [], 3) == 0.0
    assert ap_from_precision_recall([], []) == 0.0
    assert temporal_detection_ap(GROUND_TRUTH, [], 0.5) == 0.0


def test_no_positives_gives_zero():
    assert average_precision([0.9], [False], 0) == 0.0
    assert temporal_detection_ap({}, DETECTIONS, 0.5) == 0.0


@pytest.mark.parametrize(("threshold", "expected"), [(0.5, 0.9167), (0.7, 0.9167), (0.9, 0.0)])
def test_temporal_detection_ap_golden(threshold, expected):
    assert round(temporal_detection_ap(GROUND_TRUTH, DETECTIONS, threshold), 4) == expected


def test_each_ground_truth_matches_once():
    duplicates = [ScoredSegment("v2", (0, 5), 0.9), ScoredSegment("v2", (0, 5), 0.8)]
    # TP then FP over 1 positive: AP 1 at recall 1 reached by the first detection.
    assert temporal_detection_ap({"v2": [[0, 5]]}, duplicates, 0.5) == 1.0
    assert temporal_detection_ap({"v2": [[0, 5]]}, duplicates[::-1], 0.5) == 1.0


def test_second_best_ground_truth_taken_when_best_is_matched():
    ground_truth = {"v": [[0, 10], [2, 12]]}
    detections = [ScoredSegment("v", (0, 10), 0.9), ScoredSegment("v", (1, 11), 0.8)]
    assert temporal_detection_ap(ground_truth, detections, 0.5) == 1.0


def test_detection_in_unknown_video_is_false_positive():
    detections = [ScoredSegment("other", (0, 5), 0.9), ScoredSegment("v2", (0, 5), 0.8)]
    assert temporal_detection_ap({"v2": [[0, 5]]}, detections, 0.5) == pytest.approx(0.5)


def test_zero_length_segments_in_temporal_ap():
    zero = [ScoredSegment("v", (3, 3), 0.9)]
    assert temporal_detection_ap({"v": [[3, 3]]}, zero, 0.5) == 0.0
    assert temporal_detection_ap({"v": [[3, 3]]}, zero, 0.5, convention="frames") == 1.0


def test_validation():
    with pytest.raises(ValueError, match="interpolation.*'eleven_point'"):
        average_precision([0.9], [True], 1, interpolation="eleven_point")
    with pytest.raises(ValueError, match="interpolation.*'voc'"):
        ap_from_precision_recall([1.0], [1.0], interpolation="voc")
    with pytest.raises(ValueError, match="convention.*'pixel'"):
        temporal_detection_ap(GROUND_TRUTH, DETECTIONS, 0.5, convention="pixel")
    with pytest.raises(ValueError, match="equal length"):
        average_precision([0.9, 0.8], [True], 1)
    with pytest.raises(ValueError, match="num_positives"):
        average_precision([0.9, 0.8], [True, True], 1)
    with pytest.raises(ValueError, match="num_positives"):
        average_precision([0.9], [True], -1)
    with pytest.raises(ValueError, match="hits"):
        average_precision([0.9], [2], 1)
    with pytest.raises(ValueError, match="recall"):
        ap_from_precision_recall([1, 1], [1, 0.5])
    with pytest.raises(ValueError, match="tiou_threshold"):
        temporal_detection_ap(GROUND_TRUTH, DETECTIONS, 1.5)
