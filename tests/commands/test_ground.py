"""stg ground: the command's outputs, summary, JSON and exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from helpers.grounding import make_export, make_video
from stg_cli.cli import app
from stg_cli.errors import UserError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ground_cmd")
    make_export(root / "run" / "export")
    make_video(root / "videos" / "clip.mp4", 320, 240, 5)
    (root / "q.txt").write_text("# steps\ncrack the egg\npour milk\n")
    return root


def test_ground_writes_everything_and_prints_a_summary(setup, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "ground",
            str(setup / "videos"),
            "--queries",
            str(setup / "q.txt"),
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(out),
            "--viz",
            "--tau",
            "-1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "segments per query" in result.output and "crack the egg" in result.output
    for name in (
        "clip.json",
        "clip.heatmaps.npz",
        "clip.overlay.mp4",
        "clip.timeline.png",
        "predictions.json",
    ):
        assert (out / name).is_file(), name
    with av.open(str(out / "clip.overlay.mp4")) as container:  # the source's 10 fps, not 1 fps
        stream = container.streams.video[0]
        assert float(stream.average_rate) == 10.0
        assert sum(1 for _ in container.decode(stream)) == 50


def test_inline_queries_need_no_query_file(setup, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "ground",
            str(setup / "videos" / "clip.mp4"),
            "--query",
            "cut tomato",
            "--query",
            "stir",
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(tmp_path / "out"),
            "--json",
            "--tau",
            "-1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["queries"]) == {"cut tomato", "stir"}
    saved = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert "cut tomato" in json.dumps(saved)


def test_exports_for_activitynet_and_ava(setup, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "ground",
            str(setup / "videos" / "clip.mp4"),
            "--queries",
            str(setup / "q.txt"),
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(out),
            "--tau",
            "-1",
            "--export",
            "activitynet",
            "--export",
            "ava",
        ],
    )
    assert result.exit_code == 0, result.output
    prediction = json.loads((out / "clip.json").read_text())
    detections = json.loads((out / "activitynet.json").read_text())
    assert detections["version"] == "VERSION 1.3" and set(detections["results"]) == {"clip"}
    assert detections["results"]["clip"] == [
        {"label": s["label"], "score": s["score"], "segment": [s["start"], s["end"]]}
        for s in prediction["segments"]
    ]
    rows = [line.split(",") for line in (out / "ava.csv").read_text().splitlines()]
    boxed = [frame for frame in prediction["frames"] if frame["box"] and frame["label"] != "background"]
    assert len(rows) == len(boxed) > 0
    video, t, x1, y1, x2, y2, action, score = rows[0]
    assert video == "clip" and float(t) == boxed[0]["t"]
    assert abs(float(x2) - boxed[0]["box"][2] / 320) < 1e-4 and 0 <= float(y1) <= float(y2) <= 1
    labels = (out / "ava_labels.pbtxt").read_text()
    assert f'name: "{boxed[0]["label"]}"\n  id: {action}' in labels


def test_unknown_export_format_is_refused_before_grounding(setup, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "ground",
            str(setup / "videos"),
            "--queries",
            str(setup / "q.txt"),
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(tmp_path / "out"),
            "--export",
            "coco",
        ],
    )
    assert isinstance(result.exception, UserError) and "--export" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_json_and_failed_video_exit_code(setup, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    result = CliRunner().invoke(
        app,
        [
            "ground",
            str(bad),
            str(setup / "videos" / "clip.mp4"),
            "--queries",
            str(setup / "q.txt"),
            "--checkpoint",
            str(setup / "run" / "export"),
            "--out",
            str(tmp_path / "out"),
            "--json",
            "--heatmap",
            "rollout",
        ],
    )
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["grounded"] == 1 and summary["failed"] == 1
    assert summary["videos"][0]["error"] and summary["videos"][1]["video"] == "clip"
    assert set(summary["queries"]) == {"crack the egg", "pour milk"}


def test_workers_ground_the_good_videos_and_report_the_bad(setup, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    result = CliRunner().invoke(
        app,
        [
            "ground",
            str(bad),
            str(setup / "videos" / "clip.mp4"),
            "--queries",
            str(setup / "q.txt"),
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(tmp_path / "out"),
            "--json",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["grounded"] == 1 and summary["failed"] == 1
    assert summary["videos"][0]["error"] and summary["videos"][1]["video"] == "clip"
    assert list(json.loads((tmp_path / "out" / "predictions.json").read_text())) == ["clip"]


def _children(pid: int) -> list[str]:
    """The process ids of a Linux process's children."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["workers starting", "videos finished"])
def test_ctrl_c_with_workers_keeps_finished_videos(setup, tmp_path, moment):
    if moment == "workers starting" and not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs /proc/PID/task/PID/children")
    names = [f"v{index:02d}" for index in range(12)]
    for name in names:
        make_video(tmp_path / "videos" / f"{name}.mp4", seconds=20)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stg_cli",
            "ground",
            str(tmp_path / "videos"),
            "--queries",
            str(setup / "q.txt"),
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(out),
            "--fps",
            "10",
            "--viz",
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def ready() -> bool:
        if moment == "workers starting":  # the pool's processes started a moment ago, importing
            if len(_children(process.pid)) < 2:
                return False
            time.sleep(1.0)
            return True
        return out.is_dir() and any(out.glob("v*.overlay.mp4"))

    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the main process and its workers
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    finished = sorted(path.name.split(".")[0] for path in out.glob("v*.overlay.mp4"))
    assert len(finished) < len(names)
    if moment == "videos finished":
        assert finished
    for name in finished:
        assert json.loads((out / f"{name}.json").read_text())["video"] == name
        assert (out / f"{name}.heatmaps.npz").is_file() and (out / f"{name}.timeline.png").is_file()
    assert "interrupted:" in err and f"of {len(names)} video(s) finished" in err
    # the videos whose results reached the main process before it (a worker may have written a
    # video's files a moment before the interrupt, and its result never arrived)
    combined = json.loads((out / "predictions.json").read_text())
    assert set(combined) <= set(finished)
    deadline = time.monotonic() + 10
    while True:  # every worker ended with the main process
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "worker processes outlived the run"
        time.sleep(0.1)


def test_empty_query_file_is_one_red_line(setup, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stg_cli",
            "ground",
            str(setup / "videos"),
            "--queries",
            str(empty),
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no queries" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--heatmap", "nope"], "--heatmap"),
        (["--smooth", "2"], "--smooth"),
        (["--mask-threshold", "3"], "--mask-threshold"),
        (["--checkpoint", "/nonexistent"], "no trained model"),
        (["--device", "tpu"], "device"),
        (["--workers", "-1"], "--workers"),
        (["--trimmed"], "--gt"),
    ],
)
def test_bad_arguments_are_user_errors(setup, tmp_path, extra, fragment):
    args = ["ground", str(setup / "videos"), "--queries", str(setup / "q.txt"), "--out", str(tmp_path / "o")]
    if "--checkpoint" not in extra:
        args += ["--checkpoint", str(setup / "run")]
    result = CliRunner().invoke(app, [*args, *extra])
    assert isinstance(result.exception, UserError), result.output
    assert fragment in str(result.exception)


def test_trimmed_reads_youcook2_interactions_segments_and_sentences(setup, tmp_path):
    import pickle

    folder = tmp_path / "youcook2-interactions"
    folder.mkdir()
    (folder / "final_dataset_annotations.pkl").write_bytes(pickle.dumps({"clip": {1: (0, 0, 9, 9)}}))
    (folder / "final_dataset_segments.pkl").write_bytes(pickle.dumps({("clip", 1, 2)}))
    sentences = {
        "database": {"clip": {"annotations": [{"segment": [1, 2], "id": 0, "sentence": "pour the milk"}]}}
    }
    (folder / "youcookii_annotations_trainval.json").write_text(json.dumps(sentences))
    out = tmp_path / "out"
    arguments = ["ground", str(setup / "videos"), "--checkpoint", str(setup / "run"), "--out", str(out)]
    result = CliRunner().invoke(app, [*arguments, "--gt", str(folder), "--trimmed"])
    assert result.exit_code == 0, result.output
    prediction = json.loads((out / "clip.json").read_text())
    assert prediction["queries"] == ["pour the milk"]
    assert [(s["label"], s["start"], s["end"]) for s in prediction["segments"]] == [
        ("pour the milk", 1.0, 2.0)
    ]


def test_trimmed_grounds_the_ground_truth_segments(setup, tmp_path):
    truth = tmp_path / "ground_seg.json"
    truth.write_text(
        json.dumps(
            {
                "clip": [
                    {"segment": [1, 2], "id": 0, "sentence": "pour milk"},
                    {"segment": [3, 3], "id": 1, "sentence": "whisk"},
                ]
            }
        )
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "ground",
            str(setup / "videos"),
            "--queries",
            str(setup / "q.txt"),
            "--checkpoint",
            str(setup / "run"),
            "--out",
            str(out),
            "--gt",
            str(truth),
            "--trimmed",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    prediction = json.loads((out / "clip.json").read_text())
    segments = [(s["label"], s["start"], s["end"]) for s in prediction["segments"]]
    assert segments == [("pour milk", 1.0, 2.0)]
    labelled = [frame for frame in prediction["frames"] if frame["label"] != "background"]
    assert [frame["t"] for frame in labelled] == [1.0, 2.0]
    assert all(frame["point"] is not None for frame in labelled)
    assert "whisk" in json.dumps(json.loads(result.stdout))
