"""The model-free priors: their definitions on hand-made frames, seeding, boxes, skipped videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stg_cli.metrics.annotations import FrameBox, GroundTruth, Segment, find_defects
from stg_cli.metrics.baselines import (
    PRIORS,
    baseline_predictions,
    boxes_around,
    close_priors_note,
    prior_maps,
    score_priors,
    video_prior_predictions,
)
from stg_cli.metrics.heatmaps import argmax_cell_centres
from stg_cli.video.write import write_video

CELL = 16  # video pixels per cell of the 7 × 7 grid: the video is decoded at its own size
MOVING = (1, 5)  # (row, column) of the cell where a small square moves all video long
APPEARING = (5, 1)  # the cell a black block fills from 2.5 s on, still from then
FPS, SECONDS = 10, 6


def cell_slice(cell: tuple[int, int], margin: int = 0) -> tuple[slice, slice]:
    row, column = cell
    return (
        slice(row * CELL + margin, (row + 1) * CELL - margin),
        slice(column * CELL + margin, (column + 1) * CELL - margin),
    )


def write_cells_video(path: Path) -> Path:
    """112 × 112 at 10 fps for 6 s on flat grey: a 6-px white square stepping 2 px a frame
    inside cell MOVING (x offset 0, 2, 4, 6, 8, 0, …: at 0 on every whole second), and from
    frame 25 (2.5 s) a black block filling cell APPEARING, which then stays as it is."""
    frames = []
    rows, columns = cell_slice(MOVING)
    for index in range(FPS * SECONDS):
        frame = np.full((7 * CELL, 7 * CELL, 3), 128, dtype=np.uint8)
        offset = 2 * (index % 5)  # 0, 2, 4, 6, 8, 0, …: always inside the 16-px cell
        y, x = rows.start + 4, columns.start + 1 + offset
        frame[y : y + 6, x : x + 6] = 255
        if index >= 25:
            frame[cell_slice(APPEARING)] = 0
        frames.append(frame)
    return write_video(path, frames, fps=FPS, crf=8)


def truth(videos: dict[str, list[int]], size=(640, 480), box=(0.0, 0.0, 639.0, 479.0)) -> GroundTruth:
    """One step "cut" over the given annotated seconds of each video, ``box`` at each."""
    boxes = {video: [FrameBox(second, box, "cut") for second in seconds] for video, seconds in videos.items()}
    segments = {
        video: [Segment(video, min(seconds), max(seconds), "cut", 0)] for video, seconds in videos.items()
    }
    sizes = {video: size for video in videos}
    return GroundTruth(
        boxes,
        segments,
        sizes,
        {video: ["cut"] for video in videos},
        find_defects(boxes, segments, sizes, "frames"),
        "frames",
    )


def centre_of(cell: tuple[int, int], width: int = 640, height: int = 480) -> tuple[float, float]:
    row, column = cell
    return ((column + 0.5) * width / 7 - 0.5, (row + 0.5) * height / 7 - 0.5)


@pytest.fixture(scope="module")
def cells_video(tmp_path_factory) -> Path:
    return write_cells_video(tmp_path_factory.mktemp("priors") / "cells.mp4")


def test_motion_finds_the_moving_cell_and_centred_energy_the_one_unlike_the_mean(cells_video):
    maps = prior_maps(cells_video, [0, 1, 3, 4, 5, 9])
    # Second 9 is after the last frame (5.9 s): no map.
    assert maps.seconds.tolist() == [0, 1, 3, 4, 5]
    assert maps.motion.shape == maps.energy.shape == (5, 7, 7)
    motion_cells = [np.unravel_index(m.argmax(), m.shape) for m in maps.motion]
    # Second 0 is the first frame: its change is to the next frame, inside MOVING as well. The
    # block appeared between seconds 2 and 3, but not between frame 30 and the frame before.
    assert motion_cells == [MOVING] * 5
    assert maps.motion[2][APPEARING] == pytest.approx(0.0, abs=2.0)
    # frame_t is frame 10·t (offset 0), the previous frame has offset 8: two disjoint 6 × 6
    # squares of |255 − 128| · 3 over the 256 pixels of the cell; at second 0 the next frame
    # (offset 2) leaves 2 · 12 changed pixels.
    assert maps.motion[1][MOVING] == pytest.approx(72 * 381 / 256, abs=8.0)
    assert maps.motion[0][MOVING] == pytest.approx(24 * 381 / 256, abs=8.0)
    # The 1-fps mean (seconds 0-5) has the block at half strength (seconds 3-5) and the square
    # at full strength (always at offset 0): the block's cell is the one most unlike the mean,
    # before and after it appears, and the square's cell is not unlike it at all.
    energy_cells = [np.unravel_index(m.argmax(), m.shape) for m in maps.energy]
    assert energy_cells == [APPEARING] * 5
    # |0 − 64| or |128 − 64| on each channel: 192 (a mean over every frame, 35 of 60 with the
    # block, would give 160).
    assert maps.energy[3][APPEARING] == pytest.approx(192.0, abs=6.0)
    assert maps.energy[0][APPEARING] == pytest.approx(192.0, abs=6.0)
    assert maps.energy[3][MOVING] == pytest.approx(0.0, abs=4.0)


def test_video_priors_point_at_the_cell_centres_in_the_annotation_frame(cells_video):
    ground_truth = truth({"cells": [1, 4, 5]})
    found = video_prior_predictions(ground_truth, {"cells": cells_video})
    assert found.skipped == {}
    for kind, cell in (("motion", MOVING), ("centred_energy", APPEARING)):
        prediction = found.predictions[kind]["cells"]
        assert (prediction.width, prediction.height) == (640, 480)
        # second 2 lies inside the segment without a box: foreground, with no point
        assert prediction.labels[1:6] == ["cut"] * 5 and prediction.labels[6] == "background"
        np.testing.assert_allclose(prediction.points[[1, 4, 5]], [centre_of(cell)] * 3)
        np.testing.assert_allclose(
            prediction.boxes[[1, 4, 5]], boxes_around(np.array([centre_of(cell)] * 3), 640, 480)
        )
        assert np.isnan(prediction.points[2]).all()


def test_box_is_the_centre_box_size_around_the_point_and_inside_the_frame():
    boxes = boxes_around(
        np.array([[319.5, 239.5], [0, 0], [639, 479], [600, 10], [np.nan, np.nan]]), 640, 480
    )
    np.testing.assert_allclose(boxes[0], [160, 120, 479, 359])  # the centre prior's box
    np.testing.assert_allclose(boxes[1], [0, 0, 319, 239])
    np.testing.assert_allclose(boxes[2], [320, 240, 639, 479])
    np.testing.assert_allclose(boxes[3], [320, 0, 639, 239])
    assert np.isnan(boxes[4]).all()


def test_priors_point_as_a_model_does():
    maps = np.zeros((2, 7, 7))
    maps[0, 6, 2] = 1.0
    np.testing.assert_allclose(argmax_cell_centres(maps, 70, 140), [[24.5, 129.5], [34.5, 69.5]])


def test_centre_prior_is_the_frame_centre():
    ground_truth = truth({"v": [2, 3]}, size=(100, 60))
    prediction = baseline_predictions(ground_truth, "centre")["v"]
    np.testing.assert_allclose(prediction.points[[2, 3]], [[49.5, 29.5]] * 2)
    np.testing.assert_allclose(prediction.boxes[[2, 3]], [[25, 15, 74, 44]] * 2)


def test_random_prior_is_seeded_per_video():
    ground_truth = truth({"a": list(range(50)), "b": list(range(50))})
    first = baseline_predictions(ground_truth, "random", seed=3)
    again = baseline_predictions(ground_truth, "random", seed=3)
    other = baseline_predictions(ground_truth, "random", seed=4)
    alone = baseline_predictions(truth({"a": list(range(50))}), "random", seed=3)
    np.testing.assert_array_equal(first["a"].points, again["a"].points)
    np.testing.assert_array_equal(first["a"].points, alone["a"].points)
    assert not np.allclose(first["a"].points[:50], other["a"].points[:50])
    assert not np.allclose(first["a"].points[:50], first["b"].points[:50])
    points = first["a"].points[:50]
    assert (points >= 0).all() and (points[:, 0] <= 639).all() and (points[:, 1] <= 479).all()
    # Uniform over the frame: both halves are visited.
    assert (points[:, 0] < 320).any() and (points[:, 0] > 320).any()
    np.testing.assert_allclose(first["a"].boxes[:50], boxes_around(points, 640, 480))


def test_score_priors_skips_and_reports_missing_and_unreadable_videos(cells_video, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    # The moving cell's box in the annotation frame: motion points in it, energy does not.
    rows, columns = cell_slice(MOVING)
    box = (
        columns.start / 112 * 640,
        rows.start / 112 * 480,
        columns.stop / 112 * 640 - 1,
        rows.stop / 112 * 480 - 1,
    )
    ground_truth = truth({"cells": [1, 2, 4], "broken": [1, 2], "absent": [1]}, box=box)
    priors = score_priors(ground_truth, "synth", {"cells": cells_video, "broken": broken}, seed=0)
    assert list(priors.scores) == list(PRIORS)
    assert set(priors.skipped) == {"broken", "absent"}
    assert priors.skipped["absent"] == "no video file"
    assert "broken.mp4" in priors.skipped["broken"]
    assert "scored on 1 of 3 videos" in priors.notes[0] and "absent: no video file" in priors.notes[0]
    # The video priors are scored on the readable video's three seconds only.
    assert priors.frames["motion"] == priors.frames["centred_energy"] == 3
    assert priors.frames["centre"] == priors.frames["random"] == 6
    assert priors.scores["motion"]["pointing_game"] == pytest.approx(100.0)
    assert priors.scores["centred_energy"]["pointing_game"] == pytest.approx(0.0)
    assert priors.scores["centre"]["pointing_game"] == pytest.approx(0.0)
    note = close_priors_note(priors, 97.0)
    assert note is not None and "motion 100.0" in note and "centre" not in note
    assert close_priors_note(priors, 100.1) is not None
    assert close_priors_note(priors, 105.5) is None


def test_score_priors_without_videos_scores_what_needs_none():
    priors = score_priors(truth({"v": [1, 2]}), "synth")
    assert list(priors.scores) == ["centre", "random"]
    assert priors.skipped == {} and priors.notes == []
    # The whole frame is the box: every point is in it.
    assert priors.scores["centre"]["pointing_game"] == pytest.approx(100.0)
    assert priors.to_dict()["frames"] == {"centre": 2, "random": 2}
