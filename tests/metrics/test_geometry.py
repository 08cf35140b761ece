import numpy as np
import pytest

from stg_cli.metrics import box_area, box_iou, is_degenerate, point_in_box, rescale_box, segment_iou


def test_box_iou_golden_pixel_inclusive():
    assert box_iou([0, 0, 9, 9], [5, 5, 14, 14]) == pytest.approx(25 / 175)
    assert round(box_iou([0, 0, 9, 9], [5, 5, 14, 14], convention="pixel"), 4) == 0.1429


def test_box_iou_golden_continuous():
    assert round(box_iou([0, 0, 9, 9], [5, 5, 14, 14], convention="continuous"), 4) == 0.1096


def test_box_iou_identical_disjoint_and_symmetric():
    assert box_iou([3, 4, 20, 30], [3, 4, 20, 30]) == 1.0
    assert box_iou([0, 0, 9, 9], [10, 10, 19, 19]) == 0.0
    assert box_iou([0, 0, 9, 9], [10, 0, 19, 9], convention="continuous") == 0.0
    assert box_iou([1, 2, 8, 9], [4, 0, 12, 5]) == box_iou([4, 0, 12, 5], [1, 2, 8, 9])


def test_zero_area_boxes():
    point_box = [5, 5, 5, 5]
    assert box_area(point_box, "pixel") == 1.0
    assert box_area(point_box, "continuous") == 0.0
    assert box_iou(point_box, point_box, "continuous") == 0.0
    assert box_iou(point_box, point_box, "pixel") == 1.0


def test_inverted_box_has_zero_area():
    inverted = [10, 0, 4, 9]
    assert box_area(inverted) == 0.0
    assert box_iou(inverted, [0, 0, 9, 9]) == 0.0
    assert box_iou(inverted, inverted, "continuous") == 0.0


def test_is_degenerate():
    assert is_degenerate([10, 0, 4, 9])
    assert is_degenerate([5, 0, 5, 9])
    assert is_degenerate([0, 7, 9, 7])
    assert not is_degenerate([0, 0, 1, 1])


def test_point_in_box_inclusive_edges():
    box = [10, 20, 30, 40]
    assert point_in_box([10, 20], box)
    assert point_in_box([30, 40], box)
    assert point_in_box([20, 30], box)
    assert not point_in_box([9.99, 30], box)
    assert not point_in_box([20, 40.01], box)


def test_point_in_box_tolerance():
    box = [10, 20, 30, 40]
    assert not point_in_box([45, 30], box)
    assert point_in_box([45, 30], box, tolerance=15)
    assert not point_in_box([45.5, 30], box, tolerance=15)
    assert point_in_box([-5, 5], box, tolerance=15)


def test_point_in_degenerate_box():
    assert not point_in_box([5, 5], [10, 0, 4, 9])
    assert point_in_box([5, 5], [5, 5, 5, 5])


def test_rescale_box():
    full_frame = rescale_box([0, 0, 319, 179], (320, 180), (640, 360))
    np.testing.assert_allclose(full_frame, [0, 0, 639, 359])
    np.testing.assert_allclose(
        rescale_box([10, 20, 30, 40], (320, 180), (640, 360), convention="continuous"), [20, 40, 60, 80]
    )
    np.testing.assert_allclose(rescale_box([1, 2, 3, 4], (640, 480), (640, 480)), [1, 2, 3, 4])


def test_segment_iou_golden_continuous():
    assert round(segment_iou([10, 20], [15, 30]), 4) == 0.25
    assert segment_iou([10, 20], [15, 30], convention="continuous") == 0.25


def test_segment_iou_inclusive_frames():
    assert segment_iou([10, 20], [15, 30], convention="frames") == pytest.approx(6 / 21)
    assert segment_iou([0, 4], [5, 9], convention="frames") == 0.0
    assert segment_iou([0, 4], [4, 9], convention="frames") == pytest.approx(1 / 10)


def test_zero_length_segments():
    assert segment_iou([5, 5], [5, 5]) == 0.0
    assert segment_iou([5, 5], [0, 10]) == 0.0
    assert segment_iou([5, 5], [5, 5], convention="frames") == 1.0
    assert segment_iou([5, 5], [0, 9], convention="frames") == pytest.approx(1 / 10)


@pytest.mark.parametrize(
    "call",
    [
        lambda: box_iou([0, 0, 1, 1], [0, 0, 1, 1], convention="inclusive"),
        lambda: box_area([0, 0, 1, 1], convention="inclusive"),
        lambda: rescale_box([0, 0, 1, 1], (1, 1), (2, 2), convention="inclusive"),
        lambda: segment_iou([0, 1], [0, 1], convention="inclusive"),
    ],
)
def test_bad_convention_names_it(call):
    with pytest.raises(ValueError, match="convention.*'inclusive'"):
        call()


def test_malformed_inputs():
    with pytest.raises(ValueError, match="box_a"):
        box_iou([0, 0, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="finite"):
        box_iou([0, 0, float("nan"), 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="start <= end"):
        segment_iou([5, 1], [0, 1])
    with pytest.raises(ValueError, match="tolerance"):
        point_in_box([0, 0], [0, 0, 1, 1], tolerance=-1)
    with pytest.raises(ValueError, match="point"):
        point_in_box([0, 0, 0], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="to_size"):
        rescale_box([0, 0, 1, 1], (640, 480), (0, 480))


def test_mask_regions_measure_as_their_pixels():
    from stg_cli.metrics.geometry import region_area, region_intersection, region_iou

    mask = np.zeros((20, 20), dtype=bool)
    mask[0:10, 0:10] = True  # the pixels of the box [0, 0, 9, 9]
    assert region_area(mask) == 100 == box_area((0, 0, 9, 9))
    # golden: [0,0,9,9] vs [5,5,14,14] is 25/175 pixel-inclusive, 16/146 continuous
    assert region_iou(mask, (5, 5, 14, 14)) == pytest.approx(25 / 175)
    assert region_iou((5, 5, 14, 14), mask) == pytest.approx(25 / 175)
    # a mask's pixel k covers [k, k + 1): the mask is [0, 10) × [0, 10) on the plane
    assert region_intersection(mask, (5, 5, 14, 14), "continuous") == pytest.approx(25.0)
    assert region_intersection(mask, (5, 5, 9.5, 9.5), "continuous") == pytest.approx(4.5 * 4.5)
    other = np.zeros((20, 20), dtype=bool)
    other[5:15, 5:15] = True
    assert region_iou(mask, other) == pytest.approx(25 / 175)
    assert region_intersection(mask, (8.5, 8.5, 9.5, 9.5)) == pytest.approx(1.5 * 1.5)  # half of pixel 8
    with pytest.raises(ValueError, match="different frames"):
        region_intersection(mask, np.zeros((10, 10), dtype=bool))
