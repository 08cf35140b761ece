"""The Python API (stg_cli.load_grounder, stg_cli.encode): the same predictions as stg ground,
no file unless asked, and README's example running as written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stg_cli
from helpers.grounding import make_export, make_video
from stg_cli.cli import app
from stg_cli.errors import UserError

QUERIES = ["crack the egg", "pour milk"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    make_export(root / "run" / "export")
    make_video(root / "clip.mp4", 320, 240, 5)
    return root


def test_import_stays_light():
    import subprocess

    probe = "import sys, stg_cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_ground_in_memory_equals_what_stg_ground_writes(setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grounder = stg_cli.load_grounder(setup / "run", device="cpu")
    result = grounder.ground(setup / "clip.mp4", QUERIES, tau=-1)
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "cli"
    invoked = CliRunner().invoke(
        app,
        [
            "ground",
            str(setup / "clip.mp4"),
            "--query",
            QUERIES[0],
            "--query",
            QUERIES[1],
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(out),
            "--tau",
            "-1",
        ],
    )
    assert invoked.exit_code == 0, invoked.output
    assert result.to_dict() == json.loads((out / "clip.json").read_text())
    assert result.segments and result.segments == result.to_dict()["segments"]
    assert len(result.frames) == 5 and result.heatmaps.shape == (5, 7, 7)
    assert result.video_id == "clip" and result.unknown_queries == []


def test_save_writes_the_files_of_stg_ground(setup, tmp_path):
    result = stg_cli.load_grounder(setup / "run").ground(str(setup / "clip.mp4"), "pour milk", tau=-1)
    written = result.save(tmp_path / "out", viz=True)
    assert set(written) == {"json", "heatmaps", "predictions", "timeline", "overlay"}
    assert all(path.is_file() for path in written.values())
    assert json.loads(written["predictions"].read_text()) == {"clip": result.to_dict()}


def test_unknown_words_no_query_and_missing_video_are_user_errors(setup):
    grounder = stg_cli.load_grounder(setup / "run")
    assert grounder.ground(setup / "clip.mp4", ["zzqx"]).unknown_queries == ["zzqx"]
    with pytest.raises(UserError, match="no queries"):
        grounder.ground(setup / "clip.mp4", ["  "])
    with pytest.raises(UserError, match="video not found"):
        grounder.ground(setup / "nope.mp4", QUERIES)
    with pytest.raises(UserError, match="--heatmap"):
        grounder.ground(setup / "clip.mp4", QUERIES, heatmap="nope")


def test_encode_gives_the_backbone_features(setup):
    features = stg_cli.encode(setup / "clip.mp4", backbone="tiny", fps=2.0, device="cpu")
    frames = len(features.times)
    assert frames == 10 and features.global_feats.shape[0] == frames
    assert features.grid_feats.shape[:2] == (frames, 49)


def test_readme_example_runs_as_written(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"<!-- python-api -->\n```python\n(.*?)```", readme, re.S)
    assert block, "README lost its Python API example"
    code = block.group(1)
    monkeypatch.chdir(tmp_path)
    for run in re.findall(r'load_grounder\("([^"]+)"\)', code):
        make_export(Path(run) / "export")
    for video in re.findall(r'"([^"]+\.mp4)"', code):
        make_video(Path(video), 160, 120, 4)
    exec(compile(code, "README.md", "exec"), {})
