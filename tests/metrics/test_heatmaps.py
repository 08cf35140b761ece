"""The shared heatmap rules: normalisation, bilinear upsampling, the point and the masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stg_cli.metrics.heatmaps import argmax_cell_centres, normalize_cells, threshold_masks, upsample


@pytest.mark.parametrize(
    "grid, size", [((7, 7), (640, 480)), ((4, 9), (100, 37)), ((7, 7), (5, 3)), ((1, 1), (8, 8))]
)
def test_upsampling_equals_torch_bilinear_with_half_pixel_centres(grid, size):
    cells = np.random.default_rng(0).random((3, *grid)).astype(np.float32)
    width, height = size
    expected = F.interpolate(
        torch.from_numpy(cells)[:, None], size=(height, width), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    result = upsample(cells, width, height)
    assert result.shape == (3, height, width) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-6)


def test_normalisation_makes_each_frame_a_probability():
    cells = np.array([[[1.0, 3.0]], [[0.0, 0.0]], [[-2.0, np.nan]]])
    np.testing.assert_allclose(normalize_cells(cells)[:, 0], [[0.25, 0.75], [0.5, 0.5], [0.5, 0.5]])


def test_point_is_the_largest_cells_centre_symmetrically_on_every_border():
    cells = np.zeros((4, 7, 7))
    for frame, (row, column) in enumerate([(0, 0), (6, 6), (0, 6), (6, 0)]):
        cells[frame, row, column] = 1.0
    points = argmax_cell_centres(cells, 640, 480)
    first = points[0]
    np.testing.assert_allclose(points[1], [639 - first[0], 479 - first[1]])
    np.testing.assert_allclose(points[2], [639 - first[0], first[1]])
    np.testing.assert_allclose(points[3], [first[0], 479 - first[1]])
    np.testing.assert_allclose(first, [0.5 * 640 / 7 - 0.5, 0.5 * 480 / 7 - 0.5])


def test_ties_go_to_the_cell_nearest_the_grid_centre():
    np.testing.assert_allclose(argmax_cell_centres(np.ones((1, 7, 7)), 640, 480), [[319.5, 239.5]])
    tied = np.zeros((1, 3, 3))
    tied[0, 0, 0] = tied[0, 2, 1] = tied[0, 1, 2] = 1.0  # (2, 1) and (1, 2) are nearer; (1, 2) comes first
    np.testing.assert_allclose(argmax_cell_centres(tied, 30, 30), [[24.5, 14.5]])


def test_masks_threshold_the_upsampled_probability():
    probabilities = normalize_cells(np.pad(np.ones((1, 1, 1)), ((0, 0), (0, 1), (0, 1))))
    masks = threshold_masks(probabilities, 20, 20, 0.5)
    assert masks.dtype == bool and masks[0, :5, :5].all() and not masks[0, 15:, 15:].any()
    assert masks[0].sum() == (upsample(probabilities, 20, 20)[0] >= 0.5).sum()
