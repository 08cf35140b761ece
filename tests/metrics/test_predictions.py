"""Loading predictions: layouts, one-line errors, lazy heatmaps, rescaling, frame lookup."""

import json
from pathlib import Path

import numpy as np
import pytest

from stg_cli.errors import UserError
from stg_cli.metrics.geometry import rescale_box
from stg_cli.metrics.predictions import load_predictions, parse_prediction


def prediction(video="v1", **changes):
    value = {
        "video": video,
        "width": 200,
        "height": 100,
        "fps": 1.0,
        "duration": 3.0,
        "queries": ["cut onion"],
        "segments": [{"label": "cut onion", "start": 1.0, "end": 2.0, "score": 0.8}],
        "frames": [
            {"t": 2.0, "label": "cut onion", "score": 0.7, "point": [10, 20], "box": [0, 0, 19, 39]},
            {"t": 0.0, "label": "background", "score": 0.1, "point": None, "box": None},
            {"t": 1.0, "label": "cut onion", "score": 0.9, "point": [5, 6], "box": None},
        ],
        "heatmaps": f"{video}.heatmaps.npz",
    }
    value.update(changes)
    return value


def write(path, value):
    path.write_text(json.dumps(value))
    return path


def test_single_combined_and_folder_layouts_agree(tmp_path):
    single = load_predictions(write(tmp_path / "one.json", prediction()))
    combined = load_predictions(write(tmp_path / "all.json", {"v1": prediction(), "v2": prediction("v2")}))
    folder = tmp_path / "folder"
    folder.mkdir()
    write(folder / "v1.json", prediction())
    write(folder / "v2.json", prediction("v2"))
    from_folder = load_predictions(folder)
    assert list(single) == ["v1"]
    assert sorted(combined) == sorted(from_folder) == ["v1", "v2"]
    np.testing.assert_array_equal(from_folder["v1"].times, combined["v1"].times)


def test_folder_prefers_its_combined_file(tmp_path):
    write(tmp_path / "v1.json", prediction())
    write(tmp_path / "predictions.json", {"v1": prediction(), "v2": prediction("v2")})
    assert sorted(load_predictions(tmp_path)) == ["v1", "v2"]


def test_frames_are_sorted_and_nulls_become_nan(tmp_path):
    loaded = load_predictions(write(tmp_path / "p.json", prediction()))["v1"]
    assert loaded.times.tolist() == [0.0, 1.0, 2.0]
    assert loaded.labels == ["background", "cut onion", "cut onion"]
    assert np.isnan(loaded.points[0]).all() and np.isnan(loaded.boxes[1]).all()
    assert loaded.points[2].tolist() == [10, 20]
    assert loaded.heatmaps == tmp_path / "v1.heatmaps.npz"
    assert loaded.segments[0].label == "cut onion" and loaded.fps == 1.0


def test_optional_fields_have_defaults(tmp_path):
    value = prediction()
    for key in ("fps", "duration", "queries", "heatmaps"):
        del value[key]
    loaded = load_predictions(write(tmp_path / "p.json", value))["v1"]
    assert loaded.fps == 1.0 and loaded.duration is None
    assert loaded.queries == [] and loaded.heatmaps is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"width": 0}, "prediction.width"),
        ({"height": "480"}, "prediction.height"),
        ({"fps": -1}, "prediction.fps"),
        ({"segments": [{"label": "a", "start": 3, "end": 1, "score": 1}]}, "segments[0]"),
        ({"segments": [{"label": "a", "start": 0, "end": 1}]}, "segments[0] has no 'score'"),
        ({"frames": [{"t": 0, "label": "a", "score": 1, "point": [1]}]}, "frames[0].point"),
        ({"frames": [{"t": 0, "label": "a", "score": 1, "box": [5, 0, 1, 9]}]}, "frames[0].box"),
        ({"frames": [{"t": float("nan"), "label": "a", "score": 1}]}, "frames[0].t"),
        ({"frames": [{"t": 0, "label": 3, "score": 1}]}, "frames[0].label"),
        ({"frames": {}}, "prediction.frames"),
        ({"queries": "cut onion"}, "prediction.queries"),
    ],
)
def test_bad_fields_are_one_line_errors_naming_file_and_field(tmp_path, change, field):
    path = write(tmp_path / "bad.json", prediction(**change))
    with pytest.raises(UserError) as error:
        load_predictions(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and field in message


def test_missing_required_field_and_bad_json(tmp_path):
    value = prediction()
    del value["width"]
    with pytest.raises(UserError, match="has no 'width'"):
        load_predictions(write(tmp_path / "p.json", value))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="broken.json: not valid JSON"):
        load_predictions(tmp_path / "broken.json")
    with pytest.raises(UserError, match="not found"):
        load_predictions(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no prediction files"):
        load_predictions(empty)


def test_combined_key_must_match_video_and_videos_are_unique(tmp_path):
    with pytest.raises(UserError, match="not its key"):
        load_predictions(write(tmp_path / "all.json", {"v2": prediction("v1")}))
    folder = tmp_path / "twice"
    folder.mkdir()
    write(folder / "a.json", prediction())
    write(folder / "b.json", prediction())
    with pytest.raises(UserError, match="also predicted"):
        load_predictions(folder)


def test_similarity_is_read_only_when_asked(tmp_path):
    loaded = load_predictions(write(tmp_path / "p.json", prediction()))["v1"]
    with pytest.raises(UserError, match="heatmaps file not found"):
        loaded.similarity()
    np.savez(
        tmp_path / "v1.heatmaps.npz",
        times=np.array([1.0, 0.0], dtype=np.float32),
        cells=np.zeros((2, 7, 7), dtype=np.float32),
        similarity=np.array([[0.2], [0.7]], dtype=np.float32),
        queries=np.array(["cut onion"]),
    )
    similarity = loaded.similarity()
    assert similarity.times.tolist() == [0.0, 1.0]
    assert similarity.matrix[:, 0] == pytest.approx([0.7, 0.2])
    assert similarity.queries == ["cut onion"]


def test_similarity_shape_is_checked(tmp_path):
    loaded = load_predictions(write(tmp_path / "p.json", prediction()))["v1"]
    np.savez(
        tmp_path / "v1.heatmaps.npz",
        times=np.zeros(3),
        similarity=np.zeros((2, 1)),
        queries=np.array(["cut onion"]),
    )
    with pytest.raises(UserError, match=r"similarity must be \[F, Q\]"):
        loaded.similarity()


def test_rescaling_follows_the_pixel_convention(tmp_path):
    loaded = load_predictions(write(tmp_path / "p.json", prediction()))["v1"]
    half = loaded.rescaled((100, 50))
    # Pixel 10 covers [10, 11); its centre 10.5 halves to 5.25, the centre of "pixel" 4.75.
    assert half.points[2].tolist() == [4.75, 9.75]
    assert half.boxes[2].tolist() == rescale_box([0, 0, 19, 39], (200, 100), (100, 50)).tolist()
    assert half.boxes[2].tolist() == [0, 0, 9, 19]
    double = loaded.rescaled((400, 200), convention="continuous")
    assert double.points[2].tolist() == [20, 40] and double.boxes[2].tolist() == [0, 0, 38, 78]
    assert loaded.rescaled((200, 100)) is loaded


def test_frame_for_a_second_is_the_nearest_within_half_a_period():
    value = prediction(frames=[{"t": t, "label": "a", "score": 1} for t in (0.0, 0.4, 2.0, 2.6)])
    loaded = parse_prediction(value, Path("p.json"), "prediction")
    # 0 → t=0.0; 1 → nearest 0.4 is 0.6 away (> 0.5): none; 2 → 2.0; 3 → 2.6 (0.4 away).
    assert loaded.frame_indices(np.array([0, 1, 2, 3, 5])).tolist() == [0, -1, 2, 3, -1]
    sparse = parse_prediction({**value, "fps": 0.5}, Path("p.json"), "p")
    assert sparse.frame_indices(np.array([1])).tolist() == [1]  # within 1 s at 0.5 fps
