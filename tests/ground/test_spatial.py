"""Spatial post-processing: normalisation, upsampling, point, mask and box."""

from __future__ import annotations

import numpy as np
import pytest

from stg_cli.ground.spatial import locate
from stg_cli.metrics.heatmaps import normalize_cells, upsample


def _one_hot(row: int, column: int, grid=(7, 7)) -> np.ndarray:
    cells = np.zeros((1, *grid), dtype=np.float32)
    cells[0, row, column] = 1.0
    return cells


def test_normalize_gives_probabilities():
    cells = np.random.default_rng(0).uniform(0, 3, size=(4, 7, 7))
    cells[1] = 0.0
    cells[2, 0, 0] = -5.0
    probabilities = normalize_cells(cells)
    assert np.allclose(probabilities.reshape(4, -1).sum(1), 1.0, atol=1e-6)
    assert np.allclose(probabilities[1], 1 / 49)
    assert probabilities[2, 0, 0] == 0.0


def test_upsampling_keeps_the_scale_and_maps_cells_to_the_whole_frame():
    cells = normalize_cells(_one_hot(0, 6))
    heat = upsample(cells, 70, 70)[0]
    assert heat.max() == pytest.approx(1.0)
    row, column = np.unravel_index(heat.argmax(), heat.shape)
    assert 0 <= row < 10 and 60 <= column < 70  # top-right cell = the frame's top-right tenth


def test_point_and_box_of_a_single_cell():
    (location,) = locate(_one_hot(3, 5), 700, 700, threshold=0.5)
    x, y = location.point
    assert 500 <= x < 600 and 300 <= y < 400
    x1, y1, x2, y2 = location.box
    assert x1 <= x <= x2 and y1 <= y <= y2
    assert 450 <= x1 and x2 <= 650 and 250 <= y1 and y2 <= 450


def test_box_is_the_largest_component():
    cells = np.zeros((1, 7, 7), dtype=np.float32)
    cells[0, 0, 0] = 0.2  # small blob, brightest
    cells[0, 4:7, 3:6] = 0.8 / 9  # large blob
    (location,) = locate(cells, 70, 70, threshold=0.05)
    x1, y1, x2, y2 = location.box
    assert x1 >= 25 and y1 >= 35  # the 3x3 blob, not the corner
    assert location.point == (4.5, 4.5)  # the point is still the largest cell's centre


def test_mask_never_empty_below_uniform_and_empty_box_above_max():
    cells = np.ones((2, 7, 7), dtype=np.float32)
    low = locate(cells, 64, 48, threshold=0.01)
    assert all(item.box == (0.0, 0.0, 63.0, 47.0) for item in low)
    high = locate(cells, 64, 48, threshold=0.5)
    assert all(item.box is None and item.mask_area == 0 for item in high)


def test_coordinates_scale_with_the_frame():
    rng = np.random.default_rng(1)
    cells = rng.dirichlet(np.ones(49) * 0.3, size=5).reshape(5, 7, 7)
    small = locate(cells, 320, 240, threshold=0.03)
    large = locate(cells, 640, 480, threshold=0.03)
    for a, b in zip(small, large):
        assert np.allclose(np.array(b.point), 2 * np.array(a.point), atol=2.5)
        if a.box is not None:
            assert np.allclose(np.array(b.box), 2 * np.array(a.box), atol=3.5)


def test_portrait_frame_and_points_inside():
    cells = np.random.default_rng(2).uniform(size=(6, 7, 7))
    for location in locate(cells, 480, 640):
        x, y = location.point
        assert 0 <= x < 480 and 0 <= y < 640
        x1, y1, x2, y2 = location.box
        assert 0 <= x1 <= x2 < 480 and 0 <= y1 <= y2 < 640


@pytest.mark.parametrize("row, column", [(0, 0), (0, 6), (6, 0), (6, 6), (3, 0), (0, 3)])
def test_border_cells_point_at_their_centre_on_every_side(row, column):
    (location,) = locate(_one_hot(row, column), 700, 350)
    assert location.point == (column * 100 + 49.5, row * 50 + 24.5)


def test_bad_input_raises():
    with pytest.raises(ValueError):
        locate(np.zeros((7, 7)), 10, 10)
    with pytest.raises(ValueError):
        locate(np.zeros((1, 7, 7)), 0, 10)
