"""Prediction files: the JSON schema, the heatmaps archive, safe names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stg_cli.ground.output import VideoGrounding, safe_name, write_combined, write_prediction
from stg_cli.ground.spatial import locate
from stg_cli.ground.temporal import detect


def _grounding(video_id: str = "vid-1") -> VideoGrounding:
    rng = np.random.default_rng(0)
    times = np.arange(8, dtype=np.float32)
    similarity = np.full((8, 2), 0.1, dtype=np.float32)
    similarity[2:5, 0] = 0.9
    similarity[6:8, 1] = 0.7
    detection = detect(similarity, times, tau=0.5, smooth=0)
    cells = np.zeros((8, 7, 7), dtype=np.float32)
    foreground = detection.labels >= 0
    cells[foreground] = rng.dirichlet(np.ones(49), size=int(foreground.sum())).reshape(-1, 7, 7)
    found = iter(locate(cells[foreground], 640, 480))
    locations = [next(found) if flag else None for flag in foreground]
    return VideoGrounding(
        video_id=video_id,
        width=640,
        height=480,
        fps=1.0,
        duration=8.0,
        queries=["crack egg", "pour milk"],
        times=times,
        similarity=similarity,
        detection=detection,
        cells=cells,
        locations=locations,
    )


def test_video_files_follow_the_format(tmp_path):
    grounding = _grounding()
    write_prediction(grounding, tmp_path)
    prediction = json.loads((tmp_path / "vid-1.json").read_text())
    assert set(prediction) == {
        "video",
        "width",
        "height",
        "fps",
        "duration",
        "queries",
        "segments",
        "frames",
        "heatmaps",
    }
    assert prediction["segments"] == [
        {"label": "crack egg", "start": 2.0, "end": 4.0, "score": pytest.approx(0.9)},
        {"label": "pour milk", "start": 6.0, "end": 7.0, "score": pytest.approx(0.7)},
    ]
    assert [frame["label"] for frame in prediction["frames"]] == [
        "background",
        "background",
        "crack egg",
        "crack egg",
        "crack egg",
        "background",
        "pour milk",
        "pour milk",
    ]
    for frame in prediction["frames"]:
        if frame["label"] == "background":
            assert frame["point"] is None and frame["box"] is None
        else:
            x, y = frame["point"]
            assert 0 <= x < 640 and 0 <= y < 480
            x1, y1, x2, y2 = frame["box"]
            assert 0 <= x1 <= x2 < 640 and 0 <= y1 <= y2 < 480
    with np.load(tmp_path / prediction["heatmaps"], allow_pickle=False) as archive:
        assert archive["cells"].shape == (8, 7, 7)
        assert archive["similarity"].shape == (8, 2)
        assert archive["times"].dtype == np.float32
        assert archive["queries"].tolist() == ["crack egg", "pour milk"]
        sums = archive["cells"].reshape(8, -1).sum(1)
        labels = np.array([frame["label"] != "background" for frame in prediction["frames"]])
        assert np.allclose(sums[labels], 1.0, atol=1e-5) and np.all(sums[~labels] == 0)
    assert not list(tmp_path.glob(".*.tmp"))


def test_combined_file(tmp_path):
    first, second = _grounding("a"), _grounding("b/c")
    predictions = {g.video_id: write_prediction(g, tmp_path) for g in (first, second)}
    path = write_combined(predictions, tmp_path)
    combined = json.loads(path.read_text())
    assert set(combined) == {"a", "b/c"}
    assert combined["b/c"]["heatmaps"] == f"{safe_name('b/c')}.heatmaps.npz"
    assert (tmp_path / combined["b/c"]["heatmaps"]).is_file()


@pytest.mark.parametrize("video_id", ["../../etc/passwd", "a/b", ".hidden", "", "x" * 500, "é ü"])
def test_safe_names_stay_in_the_folder(video_id):
    name = safe_name(video_id)
    assert name and "/" not in name and not name.startswith(".") and len(name) < 140


def test_safe_names_keep_plain_ids_and_separate_lookalikes():
    assert safe_name("-1okAudsnAc") == "-1okAudsnAc"
    assert safe_name("a/b") != safe_name("a_b") and safe_name("a/b") != safe_name("a?b")
