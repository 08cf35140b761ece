import numpy as np
import pytest

from stg_cli.metrics import LabeledTube, TubeDetection, ground_truth_tubes, tube_iou, video_ap, video_map

GT_BOX = [0, 0, 9, 9]
DETECTED_BOX = [5, 5, 14, 14]


def tube(first, last, box):
    return {second: box for second in range(first, last + 1)}


def test_tube_iou_golden_identical_boxes():
    assert round(tube_iou(tube(10, 20, GT_BOX), tube(15, 30, GT_BOX)), 4) == 0.2857
    product = tube_iou(tube(10, 20, GT_BOX), tube(15, 30, GT_BOX), method="temporal_x_spatial")
    assert round(product, 4) == 0.2857


def test_tube_iou_golden_detected_boxes():
    detected, ground_truth = tube(10, 20, DETECTED_BOX), tube(15, 30, GT_BOX)
    assert round(tube_iou(detected, ground_truth, method="temporal_x_spatial"), 4) == 0.0408
    # Summed areas (volume method): 6·25 / (6·175 + 5·100 + 10·100); single-tube seconds add their full area.
    assert tube_iou(detected, ground_truth) == pytest.approx(150 / 2550)


def mask_of(box, size=20):
    x1, y1, x2, y2 = box
    mask = np.zeros((size, size), dtype=bool)
    mask[y1 : y2 + 1, x1 : x2 + 1] = True
    return mask


def test_tube_iou_golden_values_hold_for_masks():
    # a mask of exactly a box's pixels scores as the box under both methods
    assert round(tube_iou(tube(10, 20, mask_of(GT_BOX)), tube(15, 30, GT_BOX)), 4) == 0.2857
    detected, ground_truth = tube(10, 20, mask_of(DETECTED_BOX)), tube(15, 30, GT_BOX)
    assert tube_iou(detected, ground_truth) == pytest.approx(150 / 2550)
    assert round(tube_iou(detected, ground_truth, method="temporal_x_spatial"), 4) == 0.0408
    # an L-shaped mask inside the box's bounding box: 75 of the box's 100 pixels, none outside
    l_shape = mask_of(GT_BOX)
    l_shape[5:, 5:] = False
    assert tube_iou(tube(0, 3, l_shape), tube(0, 3, GT_BOX)) == pytest.approx(0.75)


def test_tube_iou_continuous_convention():
    one_frame = tube_iou(tube(0, 0, GT_BOX), tube(0, 0, DETECTED_BOX), convention="continuous")
    assert one_frame == pytest.approx(16 / 146)


def test_tube_iou_disjoint_and_empty():
    assert tube_iou(tube(0, 4, GT_BOX), tube(5, 9, GT_BOX)) == 0.0
    assert tube_iou(tube(0, 4, GT_BOX), tube(5, 9, GT_BOX), method="temporal_x_spatial") == 0.0
    assert tube_iou({}, {}) == 0.0
    assert tube_iou({}, tube(0, 4, GT_BOX)) == 0.0


def test_tube_iou_degenerate_boxes():
    inverted = tube(0, 4, [10, 0, 4, 9])
    assert tube_iou(inverted, inverted) == 0.0
    assert tube_iou(inverted, tube(0, 4, GT_BOX)) == 0.0
    zero_area = tube(0, 4, [5, 5, 5, 5])
    assert tube_iou(zero_area, zero_area, convention="continuous") == 0.0
    assert tube_iou(zero_area, zero_area) == 1.0


def test_ground_truth_tubes_split_on_gaps_and_steps():
    frames = {
        1: (GT_BOX, "cut"),
        2: (GT_BOX, "cut"),
        3: (GT_BOX, "stir"),
        5: (GT_BOX, "stir"),
        6: (GT_BOX, "stir"),
        7: (GT_BOX, "cut"),
    }
    tubes = ground_truth_tubes("v", frames)
    assert [(t.label, sorted(t.boxes)) for t in tubes] == [
        ("cut", [1, 2]),
        ("stir", [3]),
        ("stir", [5, 6]),
        ("cut", [7]),
    ]
    assert all(t.video == "v" for t in tubes)
    assert ground_truth_tubes("v", {}) == []


def test_video_ap_matching():
    ground_truth = [
        LabeledTube("v1", "cut", tube(10, 20, GT_BOX)),
        LabeledTube("v2", "cut", tube(0, 5, GT_BOX)),
        LabeledTube("v1", "stir", tube(30, 40, GT_BOX)),
    ]
    detections = [
        TubeDetection("v1", "cut", tube(10, 20, GT_BOX), 0.9),
        TubeDetection("v1", "cut", tube(10, 20, GT_BOX), 0.8),  # duplicate: false positive
        TubeDetection("v2", "cut", tube(0, 5, GT_BOX), 0.7),
        TubeDetection("v2", "stir", tube(0, 5, GT_BOX), 0.95),  # wrong video for stir
        TubeDetection("v1", "pour", tube(0, 5, GT_BOX), 0.99),  # class without ground truth
    ]
    aps = video_ap(ground_truth, detections, 0.5)
    assert set(aps) == {"cut", "stir"}
    assert aps["cut"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert aps["stir"] == 0.0


def test_video_map_over_thresholds():
    ground_truth = [
        LabeledTube("v", "cut", tube(15, 30, GT_BOX)),
        LabeledTube("v", "stir", tube(0, 9, GT_BOX)),
    ]
    detections = [
        TubeDetection("v", "cut", tube(10, 20, GT_BOX), 0.9),  # IoU 6/21 with its ground truth
        TubeDetection("v", "stir", tube(0, 9, GT_BOX), 0.8),
    ]
    result = video_map(ground_truth, detections)
    assert result.map_at == {0.1: 1.0, 0.2: 1.0, 0.3: 0.5, 0.4: 0.5, 0.5: 0.5}
    assert result.mean == pytest.approx(0.7)
    assert result.ap_per_class[0.3] == {"cut": 0.0, "stir": 1.0}


def test_video_map_without_detections():
    result = video_map([LabeledTube("v", "cut", tube(0, 3, GT_BOX))], [], thresholds=[0.5])
    assert result.map_at == {0.5: 0.0}
    assert result.mean == 0.0


def test_validation():
    with pytest.raises(ValueError, match="convention.*'inclusive'"):
        tube_iou(tube(0, 1, GT_BOX), tube(0, 1, GT_BOX), convention="inclusive")
    with pytest.raises(ValueError, match="method.*'mean'"):
        tube_iou(tube(0, 1, GT_BOX), tube(0, 1, GT_BOX), method="mean")
    with pytest.raises(ValueError, match="integer seconds"):
        tube_iou({0.5: GT_BOX}, tube(0, 1, GT_BOX))
    with pytest.raises(ValueError, match="threshold"):
        video_ap([LabeledTube("v", "cut", tube(0, 1, GT_BOX))], [], -0.1)
    with pytest.raises(ValueError, match="no tubes"):
        video_map([], [])
    with pytest.raises(ValueError, match="thresholds"):
        video_map([LabeledTube("v", "cut", tube(0, 1, GT_BOX))], [], thresholds=[])
