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
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"the released annotation files are not at {DATA}"
)


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
    prediction = {"video": "v1", "width": 100, "height": 100, "fps": 1.0,
                  "queries": ["cut", "stir"], "segments": segments, "frames": frames,
                  "heatmaps": None}
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
        str(predictions / "v1.json"), "--gt", str(annotations), "--dataset", "groundingyoutube",
        "--json", "--per-video", str(rows),
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
        str(predictions), "--gt", str(annotations / "GoundingYouTubeBox.json"),
        "--gt", str(annotations / "ground_seg.json"), "--dataset", "synth", "--per-class",
        "--tolerance", "30", "--require-label",
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
    np.savez(tmp_path / "m.heatmaps.npz", times=np.arange(5.0), queries=np.array(["crack egg"]),
             similarity=np.array([[0.1], [0.9], [0.9], [0.9], [0.1]]))
    (tmp_path / "m.json").write_text(json.dumps(
        {"video": "m", "width": 64, "height": 48, "segments": [], "frames": [],
         "heatmaps": "m.heatmaps.npz"}
    ))
    result = invoke(str(tmp_path / "m.json"), "--gt", str(tmp_path / "seg.json"),
                    "--dataset", "miningyoutube", "--json", "--tau", "0.5")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    # Ground truth owns t1, t2 (half-open [1, 3)); the alignment labels t1..t3: IoU 2/3, IoD 2/3.
    assert metrics["iou"] == pytest.approx(200 / 3) and metrics["iod"] == pytest.approx(200 / 3)
    table = invoke(str(tmp_path / "m.json"), "--gt", str(tmp_path), "--dataset", "miningyoutube")
    assert "IoD" in table.stdout and "66.67" in table.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dataset", "vidstg"], "unknown dataset"),
        (["--dataset", "miningyoutube"], "seg.json not found"),
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
    bad.write_text(json.dumps({"video": "v1", "width": 10, "height": 10, "segments": [],
                               "frames": [{"t": 0, "label": "cut", "score": "high"}]}))
    monkeypatch.setenv("STG_DEBUG", "0")
    monkeypatch.setattr(sys, "argv", ["stg", "score", str(bad), "--gt", str(annotations),
                                      "--dataset", "groundingyoutube"])
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
    result = invoke(str(path), "--gt", str(DATA / "groundingyoutube"),
                    "--dataset", "groundingyoutube", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["iou_point"] == pytest.approx(100.0)
    assert metrics["pointing_game"] == pytest.approx(100.0)
