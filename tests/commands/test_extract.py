"""stg extract: summary, JSON, exit codes, resumption and Ctrl-C through the command line."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stg_cli.cli import app
from stg_cli.features import FeatureStore
from stg_cli.video import write_video


def _videos(folder: Path, names: list[str], seconds: int = 4) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    captions = {}
    for name in names:
        frames = (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(seconds * 10))
        write_video(folder / f"{name}.mp4", frames, fps=10)
        captions[name] = {"start": [0.0, 2.0], "end": [1.5, 3.5], "text": ["cut the bread", f"toast {name}"]}
    return captions


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    captions = _videos(root / "videos", ["one", "two", "three"])
    (root / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    captions["broken"] = captions["one"]
    (root / "captions.json").write_text(json.dumps(captions))
    csv_dir = root / "csv"
    csv_dir.mkdir()
    for name in ("one", "two", "three"):
        (csv_dir / f"{name}.csv").write_text("start,end,text\n0,1.5,cut the bread\n2,3.5,toast it\n")
    return {"root": root, "videos": root / "videos", "captions": root / "captions.json", "csv": csv_dir}


def test_summary_table_and_failure_exit_code(inputs: dict[str, Path], tmp_path: Path) -> None:
    args = [
        "extract",
        str(inputs["videos"]),
        "--captions",
        str(inputs["captions"]),
        "--out",
        str(tmp_path / "f"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "extracted now" in result.stdout and "broken" in result.stdout
    assert "not a readable video" in result.stdout
    assert FeatureStore.open(tmp_path / "f").video_ids == ["one", "three", "two"]
    again = CliRunner().invoke(app, args + ["--json"])
    report = json.loads(again.stdout)
    assert (report["done"], report["already_stored"], report["failed"]) == (0, 3, 1)
    assert report["failures"][0]["video"] == "broken" and again.exit_code == 1


def test_json_all_good_exits_zero(inputs: dict[str, Path], tmp_path: Path) -> None:
    files = [str(inputs["videos"] / f"{name}.mp4") for name in ("one", "two")]
    result = CliRunner().invoke(
        app,
        [
            "extract",
            *files,
            "--captions",
            str(inputs["csv"]),
            "--out",
            str(tmp_path / "f"),
            "--fps",
            "2",
            "--workers",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["done"] == 2 and report["failed"] == 0 and report["frames"] == 16
    assert report["captions"]["kept"] == 4
    store = FeatureStore.open(tmp_path / "f")
    assert store.config.fps == 2.0
    assert store.load("one").frame_times.tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]


def test_shard_option(inputs: dict[str, Path], tmp_path: Path) -> None:
    base = [
        "extract",
        str(inputs["videos"]),
        "--captions",
        str(inputs["captions"]),
        "--out",
        str(tmp_path / "f"),
    ]
    seen = []
    for index in range(2):
        result = CliRunner().invoke(app, base + ["--shard", f"{index}/2", "--json"])
        report = json.loads(result.stdout)
        seen += [name for name in ("one", "two", "three") if name in json.dumps(report)]
        assert report["shard"] == [index, 2] and report["in_shard"] == 2
    assert FeatureStore.open(tmp_path / "f").video_ids == ["one", "three", "two"]
    result = CliRunner().invoke(app, base + ["--shard", "2/2"])
    assert result.exit_code != 0 and "need 0 ≤ i < n" in str(result.exception)


def test_a_duplicate_file_counts_in_its_id_s_shard_only(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Sorted ids: broken, one, three, two; shard 0 gets broken and three, shard 1 one and two,
    and the second file named ``one`` too."""
    (tmp_path / "dup").mkdir()
    shutil.copy(inputs["videos"] / "one.mp4", tmp_path / "dup" / "one.mp4")
    out = tmp_path / "f"
    base = ["extract", str(inputs["videos"]), str(tmp_path / "dup" / "one.mp4")]
    base += ["--captions", str(inputs["captions"]), "--out", str(out), "--json"]
    reports = [json.loads(CliRunner().invoke(app, base + ["--shard", f"{i}/2"]).stdout) for i in range(2)]
    assert [(r["in_shard"], r["done"], r["failed"]) for r in reports] == [(2, 1, 1), (3, 2, 1)]
    records = [json.loads((out / "shards" / f"{i}-of-2.json").read_text()) for i in range(2)]
    assert [(r["in_shard"], r["done"], r["failed"], r["remaining"]) for r in records] == [
        (2, 1, 1, 0),
        (3, 2, 1, 0),
    ]


def _stg(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stg_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_user_errors_are_one_line(inputs: dict[str, Path], tmp_path: Path) -> None:
    process = _stg(
        "extract",
        str(inputs["videos"]),
        "--captions",
        str(inputs["captions"]),
        "--out",
        str(tmp_path / "f"),
        "--backbone",
        "resnet",
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "unknown visual backbone 'resnet'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_ctrl_c_keeps_finished_videos(tmp_path: Path, workers: str) -> None:
    names = [f"v{i}" for i in range(12)]
    captions = _videos(tmp_path / "videos", names, seconds=20)
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    out = tmp_path / "f"
    process = _stg(
        "extract",
        str(tmp_path / "videos"),
        "--captions",
        str(tmp_path / "captions.json"),
        "--out",
        str(out),
        "--workers",
        workers,
    )
    deadline = time.monotonic() + 100
    while (
        time.monotonic() < deadline and not (out / "videos").is_dir() or not any((out / "videos").iterdir())
    ):
        time.sleep(0.05)
        assert process.poll() is None and time.monotonic() < deadline
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    stored = FeatureStore.open(out).video_ids  # the manifest was written on the way out
    assert 1 <= len(stored) < len(names)
    assert f"interrupted: {len(stored)} video(s) extracted before it are stored" in " ".join(err.split())
    rerun = _stg(
        "extract",
        str(tmp_path / "videos"),
        "--captions",
        str(tmp_path / "captions.json"),
        "--out",
        str(out),
        "--json",
    )
    stdout, _ = rerun.communicate(timeout=300)
    report = json.loads(stdout)
    assert report["already_stored"] == len(stored) and report["done"] == len(names) - len(stored)
    assert FeatureStore.open(out).video_ids == sorted(names)


def test_under_torchrun_each_rank_takes_its_shard(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:

    base = [
        "extract",
        str(inputs["videos"]),
        "--captions",
        str(inputs["captions"]),
        "--out",
        str(tmp_path / "f"),
        "--json",
    ]
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("WORLD_SIZE", "2")
    failures = 0
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        result = CliRunner().invoke(app, base)
        assert result.exit_code == 0, result.output  # a failed video must not stop the other ranks
        report = json.loads(result.stdout)
        assert report["shard"] == [int(rank), 2]
        failures += report["failed"]
    assert failures == 1 and FeatureStore.open(tmp_path / "f").video_ids == ["one", "three", "two"]
