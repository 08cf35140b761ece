"""Spatial grounding: from per-frame probabilities over grid cells to a point and a box.

The backbone sees each frame squashed (resized without cropping) to its input size, so the
gh × gw grid covers the whole original frame. Per frame:

1. the cell values are made a probability over the cells
   (:func:`stg_cli.metrics.heatmaps.normalize_cells`);
2. point = the centre of the largest cell, ``[x, y]`` (column, row) in pixels
   (:func:`stg_cli.metrics.heatmaps.argmax_cell_centres`; ties go to the tied cell nearest the
   grid's centre), the same on every border of the frame;
3. the map is upsampled bilinearly to the original width × height (half-pixel centres,
   :func:`stg_cli.metrics.heatmaps.upsample`). Upsampled values stay on the cell-probability
   scale: uniform is 1/(gh·gw) (0.0204 for 7 × 7), the cell maxima are kept and every pixel lies
   between its neighbouring cells' values;
4. mask = pixels whose upsampled probability is ≥ ``threshold`` (default 0.01, i.e. about half of
   the uniform value on a 7 × 7 grid: the mask drops the cells the query clearly avoids). Because
   the largest cell is ≥ 1/(gh·gw), the mask is never empty when threshold ≤ 1/(gh·gw); when it is
   empty the box is None;
5. box = the bounding box ``[x1, y1, x2, y2]`` (inclusive pixel indices) of the mask's largest
   4-connected component (the first found on ties).

All coordinates are pixels of the original video frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from stg_cli.defaults import DEFAULT_MASK_THRESHOLD
from stg_cli.metrics.heatmaps import argmax_cell_centres, normalize_cells, threshold_masks

CHUNK_FRAMES = 16


@dataclass(frozen=True)
class FrameLocation:
    """Where the query is in one frame (original pixels).

    Attributes:
        point: ``(x, y)``, the centre of the largest cell.
        box: ``(x1, y1, x2, y2)`` inclusive, or None when the mask is empty.
        mask_area: pixels in the mask.
    """

    point: tuple[float, float]
    box: tuple[float, float, float, float] | None
    mask_area: int


def locate(
    cells: np.ndarray, width: int, height: int, threshold: float = DEFAULT_MASK_THRESHOLD
) -> list[FrameLocation]:
    """Point, box and mask area per frame (see the module docstring).

    Args:
        cells: [T, gh, gw] non-negative cell scores (normalised here).
        width, height: the original frame size in pixels.
        threshold: mask threshold on the cell-probability scale.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    probabilities = normalize_cells(cells)
    points = argmax_cell_centres(probabilities, width, height)
    locations: list[FrameLocation] = []
    for begin in range(0, probabilities.shape[0], CHUNK_FRAMES):
        masks = threshold_masks(probabilities[begin : begin + CHUNK_FRAMES], width, height, threshold)
        for point, mask in zip(points[begin : begin + CHUNK_FRAMES], masks):
            locations.append(_locate_one((float(point[0]), float(point[1])), mask))
    return locations


def _locate_one(point: tuple[float, float], mask: np.ndarray) -> FrameLocation:
    components, count = ndimage.label(mask)
    if count == 0:
        return FrameLocation(point=point, box=None, mask_area=0)
    if count == 1:
        largest_mask = mask
    else:
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        sizes[0] = 0
        largest_mask = components == int(sizes.argmax())
    rows = np.flatnonzero(largest_mask.any(axis=1))
    columns = np.flatnonzero(largest_mask.any(axis=0))
    box = (float(columns[0]), float(rows[0]), float(columns[-1]), float(rows[-1]))
    return FrameLocation(point=point, box=box, mask_area=int(mask.sum()))
