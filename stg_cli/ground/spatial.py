"""Spatial grounding: from per-frame probabilities over grid cells to a point and a box.

The backbone sees each frame squashed (resized without cropping) to its input size, so the
gh × gw grid covers the whole original frame. Per frame:

1. the cell values are made a probability over the cells (negative values clipped to 0, divided
   by their sum; an all-zero frame becomes uniform);
2. the map is upsampled bilinearly to the original width × height (half-pixel centres, as
   ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``). Upsampled values
   stay on the cell-probability scale: uniform is 1/(gh·gw) (0.0204 for 7 × 7), the cell maxima
   are kept and every pixel lies between its neighbouring cells' values;
3. point = the argmax pixel ``[x, y]`` (column, row; the first in row-major order on ties);
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
import torch
import torch.nn.functional as F
from scipy import ndimage

from stg_cli.defaults import DEFAULT_MASK_THRESHOLD

CHUNK_FRAMES = 16


@dataclass(frozen=True)
class FrameLocation:
    """Where the query is in one frame (original pixels).

    Attributes:
        point: ``(x, y)`` of the argmax pixel.
        box: ``(x1, y1, x2, y2)`` inclusive, or None when the mask is empty.
        mask_area: pixels in the mask.
    """

    point: tuple[float, float]
    box: tuple[float, float, float, float] | None
    mask_area: int


def normalize_cells(cells: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-frame probability over cells. [T, gh, gw] → float32 [T, gh, gw], each frame sums to 1."""
    values = torch.as_tensor(np.asarray(cells, dtype=np.float32))
    if values.ndim != 3:
        raise ValueError(f"cells must be [frames, gh, gw], got shape {tuple(values.shape)}")
    values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    flat = values.reshape(values.shape[0], -1)
    total = flat.sum(dim=1, keepdim=True)
    uniform = torch.full_like(flat, 1.0 / max(flat.shape[1], 1))
    flat = torch.where(total > 0, flat / total.clamp_min(1e-30), uniform)
    return flat.reshape(values.shape).numpy()


def upsample(cells: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear upsampling of probability maps. [T, gh, gw] → float32 [T, height, width]."""
    values = torch.as_tensor(np.ascontiguousarray(cells, dtype=np.float32))
    if values.shape[0] == 0:
        return np.zeros((0, height, width), dtype=np.float32)
    maps = F.interpolate(values[:, None], size=(height, width), mode="bilinear", align_corners=False)
    return maps[:, 0].numpy()


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
    locations: list[FrameLocation] = []
    for begin in range(0, probabilities.shape[0], CHUNK_FRAMES):
        maps = upsample(probabilities[begin : begin + CHUNK_FRAMES], width, height)
        locations.extend(_locate_one(heat, threshold) for heat in maps)
    return locations


def _locate_one(heat: np.ndarray, threshold: float) -> FrameLocation:
    row, column = np.unravel_index(int(heat.argmax()), heat.shape)
    point = (float(column), float(row))
    mask = heat >= threshold
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
