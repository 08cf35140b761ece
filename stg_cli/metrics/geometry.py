"""Boxes, points and temporal segments: overlap measures under explicit conventions.

Boxes are ``[x1, y1, x2, y2]`` in pixels of the annotation frame. Two conventions:

- ``"pixel"`` (default): coordinates index pixels and both corners are inside the box, so the
  width is ``x2 - x1 + 1`` (the PASCAL VOC / ActivityNet-era evaluation code);
- ``"continuous"``: coordinates are points on the plane, the width is ``x2 - x1``.

Segments are ``[start, end]`` with ``start <= end``. Two conventions:

- ``"continuous"`` (default): times in seconds, the length is ``end - start`` (ActivityNet);
- ``"frames"``: inclusive integer frame indices (1 fps seconds), the length is
  ``end - start + 1``.

A negative width or height (a box with x1 > x2, as found in the released annotations) counts as
zero area; ``is_degenerate`` finds such boxes so that callers can report them.

A region is a box or a mask (bool [H, W] over the frame's pixels); ``region_area``,
``region_intersection`` and ``region_iou`` measure either against either.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from stg_cli.errors import UserError

BOX_CONVENTIONS = ("pixel", "continuous")
SEGMENT_CONVENTIONS = ("continuous", "frames")

Box = Sequence[float]
#: a box, or a mask: bool [H, W] over the frame's pixels
Region = Box | np.ndarray


def check_choice(value: object, allowed: tuple[str, ...], name: str) -> str:
    """The value, checked to be one of the allowed strings (UserError, a ValueError, naming both
    otherwise)."""
    if not isinstance(value, str) or value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_unit_interval(value: object, name: str) -> float:
    """The value as a float, checked to be a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def as_box(box: object, name: str = "box") -> np.ndarray:
    """The box as a float64 array of shape (4,), checked to be finite."""
    array = _finite_array(box, name)
    if array.shape != (4,):
        raise ValueError(f"{name} must be [x1, y1, x2, y2], got shape {array.shape}")
    return array


def as_segment(segment: object, name: str = "segment") -> np.ndarray:
    """The segment as a float64 array ``[start, end]``, checked to be finite with start <= end."""
    array = _finite_array(segment, name)
    if array.shape != (2,):
        raise ValueError(f"{name} must be [start, end], got shape {array.shape}")
    if array[0] > array[1]:
        raise ValueError(f"{name} must have start <= end, got {array.tolist()}")
    return array


def is_degenerate(box: Box) -> bool:
    """True when the box has x1 >= x2 or y1 >= y2 (whatever the convention)."""
    x1, y1, x2, y2 = as_box(box)
    return bool(x1 >= x2 or y1 >= y2)


def box_area(box: Box, convention: str = "pixel") -> float:
    """Area of the box; negative extents count as zero."""
    check_choice(convention, BOX_CONVENTIONS, "convention")
    x1, y1, x2, y2 = as_box(box)
    extra = 1.0 if convention == "pixel" else 0.0
    return max(0.0, x2 - x1 + extra) * max(0.0, y2 - y1 + extra)


def box_intersection(box_a: Box, box_b: Box, convention: str = "pixel") -> float:
    """Area of the intersection of two boxes (0 when they do not overlap)."""
    check_choice(convention, BOX_CONVENTIONS, "convention")
    a, b = as_box(box_a, "box_a"), as_box(box_b, "box_b")
    extra = 1.0 if convention == "pixel" else 0.0
    width = min(a[2], b[2]) - max(a[0], b[0]) + extra
    height = min(a[3], b[3]) - max(a[1], b[1]) + extra
    return max(0.0, width) * max(0.0, height)


def box_iou(box_a: Box, box_b: Box, convention: str = "pixel") -> float:
    """Intersection over union of two boxes; 0 when the union is empty.

    [0,0,9,9] vs [5,5,14,14] gives 25/175 under "pixel" and 16/146 under "continuous".
    """
    intersection = box_intersection(box_a, box_b, convention)
    union = box_area(box_a, convention) + box_area(box_b, convention) - intersection
    return intersection / union if union > 0 else 0.0


def region_area(region: Region, convention: str = "pixel") -> float:
    """Area of a box (:func:`box_area`) or a mask (its pixel count)."""
    if isinstance(region, np.ndarray) and region.ndim == 2:
        return float(np.count_nonzero(region))
    return box_area(region, convention)


def region_intersection(region_a: Region, region_b: Region, convention: str = "pixel") -> float:
    """Area of the intersection of two regions, each a box or a mask of the same frame.

    A mask's pixel (row i, column k) covers [k, k + 1) × [i, i + 1); a box covers
    [x1, x2 + 1) × [y1, y2 + 1) under "pixel" and [x1, x2] × [y1, y2] under "continuous", so a
    mask meets a box in the sum, over the mask's pixels, of the part of each pixel the box
    covers (whole pixels for integer corners). Masks of different shapes are an error.
    """
    a_is_mask = isinstance(region_a, np.ndarray) and region_a.ndim == 2
    b_is_mask = isinstance(region_b, np.ndarray) and region_b.ndim == 2
    if a_is_mask and b_is_mask:
        if region_a.shape != region_b.shape:
            raise ValueError(f"masks of different frames: {region_a.shape} and {region_b.shape}")
        return float(np.count_nonzero(region_a & region_b))
    if not a_is_mask and not b_is_mask:
        return box_intersection(region_a, region_b, convention)
    mask, box = (region_a, region_b) if a_is_mask else (region_b, region_a)
    check_choice(convention, BOX_CONVENTIONS, "convention")
    x1, y1, x2, y2 = as_box(box)
    extra = 1.0 if convention == "pixel" else 0.0
    rows = _pixel_coverage(y1, y2 + extra, mask.shape[0])
    columns = _pixel_coverage(x1, x2 + extra, mask.shape[1])
    return float(rows @ mask.astype(np.float64) @ columns)


def region_iou(region_a: Region, region_b: Region, convention: str = "pixel") -> float:
    """Intersection over union of two regions (boxes or masks); 0 when the union is empty."""
    intersection = region_intersection(region_a, region_b, convention)
    union = region_area(region_a, convention) + region_area(region_b, convention) - intersection
    return intersection / union if union > 0 else 0.0


def point_in_box(point: Sequence[float], box: Box, tolerance: float = 0.0) -> bool:
    """True when x1 - tol <= x <= x2 + tol and y1 - tol <= y <= y2 + tol (inclusive edges).

    ``tolerance`` is in pixels; 15 gives the pointing game's ±15 px variant. A box with x1 > x2
    or y1 > y2 contains no point unless the tolerance bridges the gap.
    """
    xy = _finite_array(point, "point")
    if xy.shape != (2,):
        raise ValueError(f"point must be [x, y], got shape {xy.shape}")
    if not isinstance(tolerance, numbers.Real) or not 0 <= tolerance < float("inf"):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    x1, y1, x2, y2 = as_box(box)
    x, y = xy
    return bool(x1 - tolerance <= x <= x2 + tolerance and y1 - tolerance <= y <= y2 + tolerance)


def rescale_box(
    box: Box, from_size: tuple[float, float], to_size: tuple[float, float], convention: str = "pixel"
) -> np.ndarray:
    """The box moved from a frame of ``from_size`` to one of ``to_size``, both (width, height).

    Under "pixel", pixel i covers [i, i + 1), so the far corner maps as (x2 + 1) * s - 1 and a
    full-frame box stays full-frame; under "continuous" every coordinate is multiplied by s.
    Returns a float64 array of shape (4,); rounding is left to the caller.
    """
    check_choice(convention, BOX_CONVENTIONS, "convention")
    array = as_box(box)
    from_wh = _size(from_size, "from_size")
    to_wh = _size(to_size, "to_size")
    scale = np.tile(to_wh / from_wh, 2)
    if convention == "continuous":
        return array * scale
    far_edge = np.array([0.0, 0.0, 1.0, 1.0])
    return (array + far_edge) * scale - far_edge


def segment_length(segment: Sequence[float], convention: str = "continuous") -> float:
    """Duration of the segment: end - start, plus one under "frames"."""
    check_choice(convention, SEGMENT_CONVENTIONS, "convention")
    start, end = as_segment(segment)
    return end - start + (1.0 if convention == "frames" else 0.0)


def segment_iou(
    segment_a: Sequence[float], segment_b: Sequence[float], convention: str = "continuous"
) -> float:
    """Temporal intersection over union; 0 when the union is empty.

    [10,20] vs [15,30] gives 5/20 = 0.25 under "continuous" and 6/21 under "frames". Two
    zero-length segments at the same instant give 0 under "continuous" (nothing to overlap) and
    1 under "frames" (the same single frame).
    """
    check_choice(convention, SEGMENT_CONVENTIONS, "convention")
    a, b = as_segment(segment_a, "segment_a"), as_segment(segment_b, "segment_b")
    extra = 1.0 if convention == "frames" else 0.0
    intersection = max(0.0, min(a[1], b[1]) - max(a[0], b[0]) + extra)
    union = (a[1] - a[0] + extra) + (b[1] - b[0] + extra) - intersection
    return intersection / union if union > 0 else 0.0


def _pixel_coverage(begin: float, end: float, pixels: int) -> np.ndarray:
    """[pixels] the length of [k, k + 1) ∩ [begin, end) for each pixel k."""
    edges = np.arange(pixels, dtype=np.float64)
    return np.clip(np.minimum(edges + 1.0, end) - np.maximum(edges, begin), 0.0, 1.0)


def _finite_array(value: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {value!r}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def _size(size: object, name: str) -> np.ndarray:
    array = _finite_array(size, name)
    if array.shape != (2,) or np.any(array <= 0):
        raise ValueError(f"{name} must be (width, height) with both > 0, got {size!r}")
    return array
