"""From grid-cell heatmaps to points and masks in a frame: the rules that grounding (which
writes a prediction's point and box) and scoring (which reads a prediction's masks) share.

A heatmap is a gh × gw grid of non-negative cell values over the whole frame (the backbone sees
each frame squashed, without cropping, so cell (i, j) covers the same part of every frame size).

- :func:`normalize_cells`: each frame's cells made a probability (negative and non-finite values
  clipped to 0, divided by their sum; an all-zero frame becomes uniform);
- :func:`upsample`: bilinear upsampling to W × H pixels with half-pixel centres, as
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``: every pixel lies
  between its neighbouring cells' values, so the values stay on the cell-probability scale;
- :func:`argmax_cell_centres`: the point of a frame is the centre of its largest cell,
  ((j + ½)·W/gw − ½, (i + ½)·H/gh − ½) in pixel coordinates whose integers are pixel centres
  (the coordinates of inclusive integer box corners). The centre, not
  the argmax pixel of the upsampled map: bilinear upsampling holds a border cell's value flat out
  to the frame's edge, so the first argmax pixel of a top or left border cell lay on the edge
  while a bottom or right one lay at its centre. Ties go to the tied cell nearest the grid's
  centre (then the first in row-major order), so a uniform map points at the frame's centre;
- :func:`threshold_masks`: the pixels whose upsampled probability is ≥ a threshold;
- :func:`first_argmax_pixels`: the authors' point, the first argmax pixel of the upsampled map
  (``--protocol official``).
"""

from __future__ import annotations

import numpy as np


def normalize_cells(cells: np.ndarray) -> np.ndarray:
    """Per-frame probability over cells. [T, gh, gw] → float32 [T, gh, gw], each frame sums to 1."""
    values = np.asarray(cells, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"cells must be [frames, gh, gw], got shape {tuple(values.shape)}")
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    flat = values.reshape(values.shape[0], -1)
    total = flat.sum(axis=1, keepdims=True, dtype=np.float64)
    uniform = np.float32(1.0 / max(flat.shape[1], 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        flat = np.where(total > 0, flat / np.maximum(total, 1e-30), uniform).astype(np.float32)
    return flat.reshape(values.shape)


def upsample(cells: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear upsampling with half-pixel centres. [T, gh, gw] → float32 [T, height, width]."""
    values = np.asarray(cells, dtype=np.float32)
    _, gh, gw = values.shape
    rows = _interpolation_weights(height, gh).astype(np.float32)
    columns = _interpolation_weights(width, gw).astype(np.float32)
    return np.matmul(np.matmul(rows, values), columns.T)


def argmax_cell_centres(cells: np.ndarray, width: int, height: int) -> np.ndarray:
    """The centre, in a ``width`` × ``height`` frame, of each frame's largest cell (ties: the
    tied cell nearest the grid's centre, then row-major). [T, gh, gw] → float64 [T, 2] ``(x, y)``."""
    values = np.asarray(cells, dtype=np.float64)
    count, gh, gw = values.shape
    flat = values.reshape(count, gh * gw)
    rows, columns = np.divmod(np.arange(gh * gw), gw)
    from_centre = (rows - (gh - 1) / 2) ** 2 + (columns - (gw - 1) / 2) ** 2
    is_max = flat == flat.max(axis=1, keepdims=True) if count else flat.astype(bool)
    chosen = np.where(is_max, from_centre, np.inf).argmin(axis=1)
    return np.stack(
        [(columns[chosen] + 0.5) * width / gw - 0.5, (rows[chosen] + 0.5) * height / gh - 0.5], axis=1
    )


def first_argmax_pixels(cells: np.ndarray, width: int, height: int) -> np.ndarray:
    """The authors' point: the first maximum, in row-major order, of each frame's upsampled map
    (on a border cell's flat plateau, its top-left pixel). [T, gh, gw] → float64 [T, 2] ``(x, y)``."""
    maps = upsample(cells, width, height)
    flat = maps.reshape(maps.shape[0], -1).argmax(axis=1)
    rows, columns = np.divmod(flat, width)
    return np.stack([columns, rows], axis=1).astype(np.float64)


def threshold_masks(probabilities: np.ndarray, width: int, height: int, threshold: float) -> np.ndarray:
    """Masks of the pixels whose upsampled cell probability is ≥ ``threshold``.
    [T, gh, gw] (each frame a probability, see :func:`normalize_cells`) → bool [T, height, width]."""
    return upsample(probabilities, width, height) >= threshold


def _interpolation_weights(size: int, cells: int) -> np.ndarray:
    """[size, cells] weights of linear interpolation with half-pixel centres (source coordinates
    below 0 clamp to 0, as torch's bilinear with ``align_corners=False``)."""
    source = np.maximum((np.arange(size) + 0.5) * cells / size - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), cells - 1)
    upper = np.minimum(lower + 1, cells - 1)
    fraction = source - lower
    weights = np.zeros((size, cells), dtype=np.float64)
    np.add.at(weights, (np.arange(size), lower), 1.0 - fraction)
    np.add.at(weights, (np.arange(size), upper), fraction)
    return weights
