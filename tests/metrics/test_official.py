"""``--protocol official``: the authors' items, point, mask scale, box raster and canvas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stg_cli.metrics.annotations import FrameBox, GroundTruth, Segment, find_defects
from stg_cli.metrics.baselines import baseline_predictions
from stg_cli.metrics.heatmaps import first_argmax_pixels
from stg_cli.metrics.official import OFFICIAL_MASK, box_raster, segment_items, youcook_canvas
from stg_cli.metrics.predictions import load_predictions
from stg_cli.metrics.score import load_ground_truth, score

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the released annotation files are not at {DATA}")


def test_items_are_segment_second_pairs_of_segments_longer_than_zero():
    frames = [FrameBox(second, (0, 0, 9, 9), "cut") for second in (1, 2, 3, 5)]
    segments = [Segment("v", 1, 3, "a", 0), Segment("v", 3, 5, "b", 1), Segment("v", 5, 5, "z", 2)]
    items = segment_items(frames, segments, labels_from_segments=False)
    # 1-3 of a, 3 again and 5 of b (4 has no box); the zero-length z is dropped
    assert [(item.second, item.label) for item in items] == [
        (1, "cut"),
        (2, "cut"),
        (3, "cut"),
        (3, "cut"),
        (5, "cut"),
    ]
    assert [item.label for item in segment_items(frames, segments, labels_from_segments=True)] == list(
        "aaabb"
    )


def test_box_raster_is_shifted_one_column_right_as_theirs():
    raster = box_raster((2, 1, 4, 2), 8, 5)
    assert np.flatnonzero(raster.any(axis=0)).tolist() == [3, 4, 5]
    assert np.flatnonzero(raster.any(axis=1)).tolist() == [1, 2]
    assert not box_raster((5, 0, 3, 4), 8, 5).any()  # x1 > x2: empty, a miss
    assert box_raster((6, 0, 9, 4), 8, 5).sum() == 5  # clipped to the frame


def test_their_point_is_the_first_argmax_pixel_and_their_mask_a_clip_share():
    cells = np.zeros((1, 7, 7))
    cells[0, 0, 0] = 1.0
    assert first_argmax_pixels(cells, 70, 70).tolist() == [[0.0, 0.0]]  # the top-left plateau's corner
    uniform = np.full((7, 7), 1 / 49)
    # 1/49/16 = 1.3e-3 ≥ 1e-4: the whole frame; stg's 0.01 would also keep it
    assert OFFICIAL_MASK.mask(uniform, 70, 70).all()
    peaked = np.full((7, 7), 1e-3 / 48)
    peaked[3, 3] = 1 - 1e-3
    # a cell with 2.1e-5 of the frame's mass is 1.3e-6 of the clip's: dropped
    assert OFFICIAL_MASK.mask(peaked, 7, 7).sum() == 1


def test_youcook_canvas_cuts_the_frame():
    assert youcook_canvas((1920, 1080)) == (640, 360) and youcook_canvas((480, 360)) == (480, 360)


def test_hand_computed_official_case(tmp_path):
    # 7 × 7 frame = the grid; "cut" box [0, 0, 2, 2] at seconds 1-2; cells peaked at (1, 1).
    boxes = {"v": [FrameBox(1, (0, 0, 2, 2), "cut"), FrameBox(2, (0, 0, 2, 2), "cut")]}
    segments = {"v": [Segment("v", 1, 2, "cut", 0)]}
    truth = GroundTruth(
        boxes, segments, {"v": (7, 7)}, {}, find_defects(boxes, segments, {}, "frames"), "frames"
    )
    cells = np.zeros((3, 7, 7), dtype=np.float32)
    cells[1:, 1, 1] = 0.5
    cells[1:, 4, 4] = 0.5  # a second peak, later in row-major order
    np.savez(tmp_path / "v.heatmaps.npz", times=np.arange(3, dtype=np.float32), cells=cells)
    frames = [{"t": 0, "label": "background", "score": 0.0, "point": None, "box": None}]
    frames += [{"t": t, "label": "cut", "score": 1.0, "point": [4, 4], "box": [0, 0, 2, 2]} for t in (1, 2)]
    value = {
        "video": "v",
        "width": 7,
        "height": 7,
        "segments": [],
        "frames": frames,
        "heatmaps": "v.heatmaps.npz",
    }
    (tmp_path / "v.json").write_text(json.dumps(value))
    predictions = load_predictions(tmp_path / "v.json")
    stg = score(predictions, truth, "groundingyoutube")
    official = score(predictions, truth, "groundingyoutube", protocol="official")
    # stg: the file's point (4, 4) misses; official: the first argmax pixel (1, 1) hits
    assert stg.metrics["pointing_game"] == 0.0 and official.metrics["pointing_game"] == 100.0
    # official mask: cells (1, 1) and (4, 4); raster columns 1-3, rows 0-2: IoU 1 / (2 + 9 − 1)
    assert official.metrics["spatial_accuracy"] == 0.0
    assert official.counts["pointing_frames"] == 2


@needs_data
def test_real_official_oracle_ceilings():
    truth = load_ground_truth([DATA / "groundingyoutube"], "groundingyoutube", "official")
    assert truth.trimmed_segments is not None
    report = score(baseline_predictions(truth, "oracle"), truth, "groundingyoutube", protocol="official")
    # every (seg.json segment, second with a box) pair; boxes whose raster is empty are misses
    assert report.counts["pointing_frames"] == 17_531 and report.counts["pointing_hits"] == 17_511
    assert report.metrics["iou_point"] == pytest.approx(100.0) and report.metrics[
        "map_mean"
    ] == pytest.approx(100.0)
    youcook = load_ground_truth([DATA / "youcook2-interactions"], "youcook-interactions")
    report = score(
        baseline_predictions(youcook, "oracle"), youcook, "youcook-interactions", protocol="official"
    )
    # boxes beyond their 640 × 360 canvas cannot be hit
    assert report.counts["pointing_frames"] == 2_496
    assert round(report.metrics["pointing_game"], 2) == 96.23
