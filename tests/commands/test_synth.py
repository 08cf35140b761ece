"""stg synth: the command writes the benchmark, prints a summary or JSON, refuses bad calls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from stg_cli.cli import app
from stg_cli.commands.synth import build_config, parse_size
from stg_cli.errors import UserError
from stg_cli.metrics.annotations import load_grounding_youtube

SMALL = ["--videos", "2", "--size", "96x64", "--fps", "1", "--seed", "5"]


def test_json_summary_and_files(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["synth", str(out), *SMALL, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["train_videos"], summary["test_videos"]) == (1, 1)
    assert summary["config"]["width"] == 96 and summary["config"]["fps"] == 1
    assert summary["frames"] == summary["video_seconds"]
    truth = load_grounding_youtube(out / "test" / "annotations")
    assert sum(len(b) for b in truth.boxes.values()) == summary["boxes"]
    assert len((out / "test" / "queries.txt").read_text().splitlines()) == summary["test_queries"]


def test_table_and_preview(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["synth", str(out), *SMALL, "--preview"])
    assert result.exit_code == 0, result.output
    assert "test boxes" in result.stdout and "frames/s" in result.stdout
    assert "distractor actions" in result.stdout
    assert (out / "preview.png").stat().st_size > 0
    again = CliRunner().invoke(app, ["synth", str(out), *SMALL, "--overwrite", "--json"])
    assert again.exit_code == 0, again.output


def test_options_build_the_config():
    config = build_config(10, None, None, 1, False, False, "640x480", 8, "hard")
    assert (config.train_videos, config.test_videos) == (8, 2)
    assert (config.width, config.height, config.fps, config.difficulty) == (640, 480, 8, "hard")
    full = build_config(None, 3, 1, 0, False, True, None, None, "medium")
    assert (full.train_videos, full.test_videos, full.width) == (3, 1, 640)
    assert parse_size("320X240") == (320, 240)
    with pytest.raises(UserError, match="exclude"):
        build_config(None, None, None, 0, True, True, None, None, "medium")
    with pytest.raises(UserError, match="--videos excludes"):
        build_config(4, 2, None, 0, False, False, None, None, "medium")
    with pytest.raises(UserError, match="640x480"):
        parse_size("640by480")
    v1 = build_config(None, None, None, 0, False, False, None, None, "medium", 0)
    assert v1.difficulty_settings.distractor_actions == 0 and v1.difficulty_settings.pan == 0
    assert (
        build_config(
            None, None, None, 0, False, False, None, None, "easy", 2
        ).difficulty_settings.distractor_actions
        == 2
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--size", "99x64"], "even"),
        (["--size", "100000x100000"], "to 3840x3840"),
        (["--difficulty", "brutal"], "difficulty"),
        (["--videos", "0"], "at least 1"),
        (["--distractors", "9"], "distractors"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_options_are_one_red_line(tmp_path, args, fragment):
    result = subprocess.run(
        [sys.executable, "-m", "stg_cli", "synth", str(tmp_path / "x"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    result = CliRunner().invoke(app, ["synth", str(tmp_path), *SMALL])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError)
    assert "not empty" in str(result.exception)
    assert (tmp_path / "notes.txt").read_text() == "keep"
