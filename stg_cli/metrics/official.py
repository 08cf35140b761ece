"""The authors' evaluation conventions (``stg score --protocol official``), where they differ
from stg's, so that a number can be compared with the paper's tables knowingly.

Read from the authors' released evaluation code (``eval_mining_clip_iou_finetune.py`` and its
loader for GroundingYouTube, ``eval_youcook_clip_finetune.py`` for YouCook2-Interactions). That
code evaluates only the trimmed spatial metrics; IoU+Point, video mAP and MiningYouTube's
IoU/IoD are not in it, so they keep stg's definitions under either protocol.

- **Items** (their temporal windows): every (segment, second) pair of a segment with
  end > start (zero-length and inverted segments dropped) and a second start ≤ s ≤ end that has
  a box; a second inside two segments counts twice. GroundingYouTube's segments are
  ``seg.json``'s (their README's), not ``ground_seg.json``'s. Rates are pooled over items.
- **Point**: the first maximum, in row-major order, of the heatmap upsampled bilinearly to the
  frame (:func:`stg_cli.metrics.heatmaps.first_argmax_pixels`), read from the heatmaps file's
  cells (a prediction without one keeps its own point). Hit: x1 ≤ x ≤ x2 and y1 ≤ y ≤ y2.
- **Mask** (their scale): their heatmap is a probability over the 16 × gh × gw cells of a
  16-frame clip, thresholded at 1e-4 after upsampling; stg's per-frame probability divided by
  16 (each frame taken to hold an equal share of its clip) is put on that scale
  (:data:`OFFICIAL_MASK`). The same masks make the tubes of video mAP.
- **Spatial accuracy** (printed as "meanAP" by their code): a hit when the mask's pixel IoU
  with the box, rasterised as theirs is (columns x1 + 1 … x2 + 1, rows y1 … y2, clipped to the
  frame), is > 0.3. A box whose raster is empty (x1 > x2, as 18 released boxes are) counts as
  a miss of both the pointing game and the spatial accuracy, where stg leaves it out (a box
  with x1 = x2 has a one-pixel-wide raster and is scored).
- **Frame size**: GroundingYouTube as stg (the annotation frame, ``id2wh_new.json``);
  YouCook2-Interactions: their canvas is the video's frame cut to at most 640 × 360
  (:data:`stg_cli.metrics.annotations.YOUCOOK_FRAME`) while the boxes stay in the video's own
  pixels.

Not reproduced: their last second of each segment is scored on a zero-padded frame (a segment
[start, end] decodes end − start frames for end − start + 1 seconds: 3,311 of 17,812
GroundingYouTube items), which no prediction file can stand for; here every second is scored on
its own frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stg_cli.metrics.annotations import YOUCOOK_FRAME, FrameBox, Segment
from stg_cli.metrics.geometry import point_in_box
from stg_cli.metrics.grounding import MaskRule, Rate, SpatialRecord
from stg_cli.metrics.heatmaps import first_argmax_pixels
from stg_cli.metrics.predictions import VideoPrediction

PROTOCOLS = ("stg", "official")
#: their mask: per-clip mass ≥ 1e-4, a 16-frame clip's mass shared equally by its frames
OFFICIAL_MASK = MaskRule(threshold=1e-4, frames_per_unit=16)
OFFICIAL_IOU_THRESHOLD = 0.3


@dataclass(frozen=True)
class OfficialFrame:
    """A prediction's frame read the authors' way: its label and score, the point and the mask
    (bool [H, W]; None without a heatmaps file, where the box stands in)."""

    label: str
    score: float
    point: tuple[float, float] | None
    mask: np.ndarray | None
    box: tuple[float, float, float, float] | None


def segment_items(
    frames: Sequence[FrameBox], segments: Sequence[Segment], labels_from_segments: bool
) -> list[FrameBox]:
    """One item per (segment, second with a box) of each segment with end > start, in segment
    order; the label is the box's, or with ``labels_from_segments`` the segment's."""
    by_second = {frame.second: frame for frame in frames}
    items = []
    for segment in segments:
        if segment.end <= segment.start:
            continue
        for second in range(math.ceil(segment.start), math.floor(segment.end) + 1):
            frame = by_second.get(second)
            if frame is None:
                continue
            label = segment.label if labels_from_segments or frame.label is None else frame.label
            items.append(FrameBox(second, frame.box, label))
    return items


def official_frames(prediction: VideoPrediction | None, seconds: Sequence[int]) -> list[OfficialFrame | None]:
    """The prediction's frame for each second (None where it has none), with the authors' point
    and mask computed from the heatmaps file's cells in the prediction's frame."""
    if prediction is None:
        return [None] * len(seconds)
    indices = prediction.frame_indices(np.asarray(seconds, dtype=np.float64))
    cells = prediction.cells() if prediction.heatmaps is not None else None
    rows = cells.rows(prediction.times_at(indices)) if cells is not None else np.full(len(indices), -1)
    found = [row for row in rows if row >= 0]
    width, height = prediction.width, prediction.height
    points = first_argmax_pixels(cells.cells[found], width, height) if found else np.zeros((0, 2))
    point_of = dict(zip(found, points))
    result: list[OfficialFrame | None] = []
    for index, row in zip(indices, rows):
        if index < 0:
            result.append(None)
            continue
        point, box = prediction.points[index], prediction.boxes[index]
        mask = None
        if row >= 0:
            point = point_of[row]
            mask = OFFICIAL_MASK.mask(cells.cells[row], width, height)
        result.append(
            OfficialFrame(
                label=prediction.labels[index],
                score=float(prediction.scores[index]),
                point=None if np.isnan(point[0]) else (float(point[0]), float(point[1])),
                mask=mask,
                box=None if np.isnan(box[0]) else tuple(float(v) for v in box),
            )
        )
    return result


def box_raster(box: Sequence[float], width: int, height: int) -> np.ndarray:
    """The box as their code rasterises it: columns x1 + 1 … x2 + 1 and rows y1 … y2 of integer
    corners, clipped to the frame → bool [height, width]."""
    x1, y1, x2, y2 = (int(v) for v in box)
    raster = np.zeros((height, width), dtype=bool)
    raster[max(y1, 0) : max(y2 + 1, 0), max(x1 + 1, 0) : max(x2 + 2, 0)] = True
    return raster


def official_scores(
    items: Sequence[FrameBox],
    frames: Sequence[OfficialFrame | None],
    frame_size: tuple[int, int],
    tolerance: float,
    require_label: bool,
) -> tuple[Rate, Rate, list[SpatialRecord]]:
    """The pointing game (exact, and within ``tolerance`` px), and a spatial record per item
    (hit: the mask's IoU with the box raster > 0.3), the authors' way (module docstring).
    ``frame_size`` is the ``(width, height)`` of the predictions' frame."""
    width, height = frame_size
    hits = tolerant = 0
    records = []
    for item, frame in zip(items, frames, strict=True):
        label = item.label if item.label is not None else "unlabeled"
        raster = box_raster(item.box, width, height)
        usable = frame is not None and raster.any() and not (require_label and frame.label != item.label)
        if not usable:
            records.append(SpatialRecord(label, None, False))
            continue
        if frame.point is not None:
            hits += point_in_box(frame.point, item.box)
            tolerant += point_in_box(frame.point, item.box, tolerance)
        region = frame.mask if frame.mask is not None else _box_mask(frame.box, width, height)
        if region is None:
            records.append(SpatialRecord(label, None, False))
            continue
        union = np.count_nonzero(region | raster)
        iou = np.count_nonzero(region & raster) / union if union else 0.0
        records.append(SpatialRecord(label, frame.score, bool(iou > OFFICIAL_IOU_THRESHOLD)))
    return Rate(int(hits), len(items)), Rate(int(tolerant), len(items)), records


def youcook_canvas(size: tuple[int, int]) -> tuple[int, int]:
    """Their YouCook2-Interactions canvas for a video of ``size`` (width, height)."""
    return min(size[0], YOUCOOK_FRAME[0]), min(size[1], YOUCOOK_FRAME[1])


def _box_mask(box: tuple[float, float, float, float] | None, width: int, height: int) -> np.ndarray | None:
    """A predicted box's pixels (inclusive corners) as a mask, or None."""
    if box is None:
        return None
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    mask = np.zeros((height, width), dtype=bool)
    mask[max(y1, 0) : max(y2 + 1, 0), max(x1, 0) : max(x2 + 1, 0)] = True
    return mask
