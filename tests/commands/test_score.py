"""stg score: tables in the paper's layout, JSON, per-video CSV, per-class tables, user errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stg_cli.cli import app, main
from stg_cli.errors import UserError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the released annotation files are not at {DATA}")


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A one-video GroundingYouTube folder and a per-video prediction folder for it."""
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    boxes = {
        "v1": {
            "1": {"box": [10, 10, 29, 29], "step": "cut"},
            "2": {"box": [10, 10, 29, 29], "step": "cut"},
            "4": {"box": [50, 50, 69, 69], "step": "stir"},
        }
    }
    (annotations / "GoundingYouTubeBox.json").write_text(json.dumps(boxes))
    (annotations / "ground_seg.json").write_text(
        json.dumps(
            {
                "v1": [
                    {"segment": [1, 2], "id": 0, "sentence": "cut"},
                    {"segment": [4, 4], "id": 1, "sentence": "stir"},
                ]
            }
        )
    )
    (annotations / "id2wh_new.json").write_text(json.dumps({"v1": [100, 100]}))
    (annotations / "vid2step.json").write_text(json.dumps({"v1": ["cut", "stir", "background"]}))
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    frames = [
        {"t": 1, "label": "cut", "score": 0.9, "point": [20, 20], "box": [10, 10, 29, 29]},
        {"t": 2, "label": "cut", "score": 0.6, "point": [50, 50], "box": [50, 50, 69, 69]},
        {"t": 4, "label": "stir", "score": 0.8, "point": [60, 60], "box": [50, 50, 69, 69]},
    ]
    segments = [
        {"label": "cut", "start": 1, "end": 2, "score": 0.9},
        {"label": "stir", "start": 4, "end": 4, "score": 0.8},
    ]
    prediction = {
        "video": "v1",
        "width": 100,
        "height": 100,
        "fps": 1.0,
        "queries": ["cut", "stir"],
        "segments": segments,
        "frames": frames,
        "heatmaps": None,
    }
    (predictions / "v1.json").write_text(json.dumps(prediction))
    (predictions / "extra.json").write_text(json.dumps({**prediction, "video": "extra"}))
    return annotations, predictions


def invoke(*args: str):
    return CliRunner().invoke(app, ["score", *args])


def test_table_in_the_paper_layout(dataset):
    annotations, predictions = dataset
    result = invoke(str(predictions), "--gt", str(annotations), "--dataset", "groundingyoutube")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("IoU+Point", "0.1", "0.5", "mean", "pointing game", "±15 px", "spatial mAP"):
        assert heading in out
    # Point hits at seconds 1 and 4 of 3 trimmed frames; IoU+Point 2 of 3 foreground seconds.
    assert "66.67" in out
    assert "predicted but not annotated (ignored): 1 (extra)" in out
    assert "data defects" in out


def test_json_and_per_video_csv(dataset, tmp_path):
    annotations, predictions = dataset
    rows = tmp_path / "out" / "per_video.csv"
    result = invoke(
        str(predictions / "v1.json"),
        "--gt",
        str(annotations),
        "--dataset",
        "groundingyoutube",
        "--json",
        "--per-video",
        str(rows),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"] == "groundingyoutube" and report["videos"] == 1
    assert report["metrics"]["pointing_game"] == pytest.approx(200 / 3)
    # Tubes: cut {1 ✓, 2 at the stir box} → IoU 400/1200 = 1/3: a hit up to 0.3; stir: IoU 1.
    assert report["metrics"]["map_mean"] == pytest.approx(80.0)
    assert report["missing"] == [] and report["options"]["tau"] == 0.5
    with rows.open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["video"] == "v1" and float(row["iou_point"]) == pytest.approx(200 / 3, abs=1e-3)


def test_per_class_tables_and_options(dataset):
    annotations, predictions = dataset
    result = invoke(
        str(predictions),
        "--gt",
        str(annotations / "GoundingYouTubeBox.json"),
        "--gt",
        str(annotations / "ground_seg.json"),
        "--dataset",
        "synth",
        "--per-class",
        "--tolerance",
        "30",
        "--require-label",
    )
    assert result.exit_code == 0, result.output
    assert "per class" in result.stdout and "spatial AP" in result.stdout
    # cut: video AP 100, 100, 100, 0, 0 over the thresholds → 60; spatial AP 1/2.
    (cut_row,) = [line for line in result.stdout.splitlines() if "cut" in line]
    assert "60.00" in cut_row and "50.00" in cut_row
    assert "±30 px" in result.stdout


def test_mining_youtube_table(tmp_path):
    (tmp_path / "seg.json").write_text(
        json.dumps({"m": [{"segment": [1, 3], "id": 0, "sentence": "crack_egg"}]})
    )
    np.savez(
        tmp_path / "m.heatmaps.npz",
        times=np.arange(5.0),
        queries=np.array(["crack egg"]),
        similarity=np.array([[0.1], [0.9], [0.9], [0.9], [0.1]]),
    )
    (tmp_path / "m.json").write_text(
        json.dumps(
            {
                "video": "m",
                "width": 64,
                "height": 48,
                "segments": [],
                "frames": [],
                "heatmaps": "m.heatmaps.npz",
            }
        )
    )
    result = invoke(
        str(tmp_path / "m.json"),
        "--gt",
        str(tmp_path / "seg.json"),
        "--dataset",
        "miningyoutube",
        "--json",
        "--tau",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    # Ground truth owns t1..t3 (inclusive [1, 3]); the alignment labels t1..t3: 100.
    assert metrics["iou"] == pytest.approx(100.0) and metrics["iod"] == pytest.approx(100.0)
    half_open = ["--frame-ranges", "half_open"]
    table = invoke(str(tmp_path / "m.json"), "--gt", str(tmp_path), "--dataset", "miningyoutube", *half_open)
    # half-open [1, 3) owns t1, t2 only: IoU 2/3, IoD 2/3
    assert "IoD" in table.stdout and "66.67" in table.stdout


def prior_rows(output: str) -> dict[str, list[str]]:
    """The priors table's rows: name → cells."""
    table = output[output.index("model-free priors") :]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 6 and cells[-1].isdigit():
            rows[cells[0]] = cells[1:]
    return rows


def test_centre_and_random_priors_are_beside_the_scores_without_videos(dataset):
    annotations, predictions = dataset
    result = invoke(str(predictions), "--gt", str(annotations), "--dataset", "groundingyoutube")
    assert result.exit_code == 0, result.output
    rows = prior_rows(result.stdout)
    assert list(rows) == ["predictions", "centre", "random, seed 0"]
    assert rows["predictions"] == ["66.67", "66.67", "66.67", "75.00", "3"]
    # The centre (49.5, 49.5) misses both boxes, but is within 15 px of stir's [50, 50, 69, 69];
    # its box [25, 25, 74, 74] has IoU 0.16 with stir.
    assert rows["centre"] == ["0.00", "33.33", "0.00", "0.00", "3"]
    assert "note: the motion and centred-energy priors read the videos: pass --videos DIR" in (
        " ".join(result.stdout.split())
    )
    report = json.loads(
        invoke(str(predictions), "--gt", str(annotations), "--dataset", "groundingyoutube", "--json").stdout
    )
    assert list(report["priors"]["scores"]) == ["centre", "random"]
    assert report["priors"]["scores"]["centre"]["pointing_game"] == 0.0
    assert report["notes"][0].startswith("the motion and centred-energy priors read the videos")


def write_motion_video(path: Path) -> Path:
    """112 × 112 (16 px per cell of 7 × 7) at 10 fps for 6 s: a square stepping inside cell
    (1, 1) until 3.4 s, then inside cell (4, 4): the cut box at seconds 1-2, the stir box at 4
    of the ``dataset`` fixture's 100 × 100 frame."""
    from stg_cli.video.write import write_video

    frames = []
    for index in range(60):
        frame = np.full((112, 112, 3), 128, dtype=np.uint8)
        cell = 1 if index < 35 else 4
        x, y = cell * 16 + 1 + 2 * (index % 5), cell * 16 + 5
        frame[y : y + 6, x : x + 6] = 255
        frames.append(frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, fps=10, crf=8)


def test_videos_add_the_motion_priors_and_a_note_when_a_prior_is_close(dataset, tmp_path):
    annotations, predictions = dataset
    videos = tmp_path / "videos"
    write_motion_video(videos / "v1.mp4")
    (videos / "unrelated.mp4").write_bytes(b"never read: not annotated")
    args = [
        str(predictions),
        "--gt",
        str(annotations),
        "--dataset",
        "groundingyoutube",
        "--videos",
        str(videos),
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    rows = prior_rows(result.stdout)
    assert list(rows) == ["predictions", "centre", "random, seed 0", "motion", "centred energy"]
    # The motion cell's centre (20.9, 20.9), then (63.8, 63.8): inside the box every second.
    assert rows["motion"][0] == "100.00"
    first_note = " ".join(result.stdout[result.stdout.index("note:") :].split())
    assert first_note.startswith(
        "note: model-free priors point within 5 points of the model's "
        "pointing game (66.7) or above it: motion 100.0"
    )
    report = json.loads(invoke(*args, "--json").stdout)
    priors = report["priors"]
    assert list(priors["scores"]) == ["centre", "random", "motion", "centred_energy"]
    assert priors["scores"]["motion"]["pointing_game"] == pytest.approx(100.0)
    assert priors["frames"]["motion"] == 3 and priors["skipped"] == {}
    assert report["notes"][0].startswith("model-free priors point within 5 points")


def test_an_unreadable_video_is_left_out_of_the_motion_priors_and_named(dataset, tmp_path):
    annotations, predictions = dataset
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "v1.mp4").write_bytes(b"not a video")
    result = invoke(
        str(predictions),
        "--gt",
        str(annotations),
        "--dataset",
        "groundingyoutube",
        "--videos",
        str(videos),
        "--json",
    )
    assert result.exit_code == 0, result.output
    priors = json.loads(result.stdout)["priors"]
    assert list(priors["scores"]) == ["centre", "random"]
    assert list(priors["skipped"]) == ["v1"] and "v1.mp4" in priors["skipped"]["v1"]
    assert "scored on 0 of 1 videos" in priors["notes"][0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dataset", "vidstg"], "unknown dataset"),
        (["--dataset", "miningyoutube"], "seg.json not found"),
        (["--dataset", "synth", "--videos", "/nonexistent/videos"], "is not a folder"),
        (["--dataset", "miningyoutube", "--videos", "."], "--videos is for the spatial priors"),
    ],
)
def test_user_errors(dataset, args, fragment):
    annotations, predictions = dataset
    result = invoke(str(predictions), "--gt", str(annotations), *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError) and fragment in str(result.exception)


def test_bad_prediction_is_one_red_line_and_exit_2(dataset, tmp_path, monkeypatch, capsys):
    annotations, _ = dataset
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "video": "v1",
                "width": 10,
                "height": 10,
                "segments": [],
                "frames": [{"t": 0, "label": "cut", "score": "high"}],
            }
        )
    )
    monkeypatch.setenv("STG_DEBUG", "0")
    monkeypatch.setattr(
        sys, "argv", ["stg", "score", str(bad), "--gt", str(annotations), "--dataset", "groundingyoutube"]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert "frames[0].score" in stderr and str(bad) in stderr.replace("\n", "")


@needs_data
@pytest.mark.slow
def test_real_grounding_youtube_oracle_from_the_command_line(tmp_path):
    from stg_cli.metrics.baselines import baseline_predictions, save_predictions
    from stg_cli.metrics.score import load_ground_truth

    truth = load_ground_truth([DATA / "groundingyoutube"], "groundingyoutube")
    path = save_predictions(baseline_predictions(truth, "oracle"), tmp_path / "oracle.json")
    result = invoke(
        str(path), "--gt", str(DATA / "groundingyoutube"), "--dataset", "groundingyoutube", "--json"
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["iou_point"] == pytest.approx(100.0)
    assert metrics["pointing_game"] == pytest.approx(100.0)
    official = invoke(
        str(path),
        "--gt",
        str(DATA / "groundingyoutube"),
        "--dataset",
        "groundingyoutube",
        "--protocol",
        "official",
        "--json",
    )
    assert official.exit_code == 0, official.output
    report = json.loads(official.stdout)
    assert report["options"]["protocol"] == "official" and report["counts"]["pointing_frames"] == 17_531
    assert any(note.startswith("protocol official") for note in report["notes"])
