"""stg store status|pack, and stg train on a packed store, through the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from helpers.stores import make_store, write_store
from helpers.training import SMALL_MODEL, write_training_store
from stg_cli.cli import app
from stg_cli.features.status import ShardProgress, write_shard_progress


def test_pack_then_train_gives_the_same_run(tmp_path: Path) -> None:
    per_video = tmp_path / "per-video"
    write_training_store(per_video)
    packed = tmp_path / "packed"
    shutil.copytree(per_video, packed)
    result = CliRunner().invoke(app, ["store", "pack", str(packed), "--videos-per-pack", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["videos_packed"] == 4 and not any((packed / "videos").iterdir())
    runs = {}
    for name, store in (("per-video", per_video), ("packed", packed)):
        trained = CliRunner().invoke(
            app,
            [
                "train",
                str(store),
                "--out",
                str(tmp_path / f"run-{name}"),
                "--steps",
                "2",
                *SMALL_MODEL,
                "--json",
            ],
        )
        assert trained.exit_code == 0, trained.output
        runs[name] = json.loads(trained.stdout)
    assert runs["packed"]["samples"] == runs["per-video"]["samples"] == 24
    assert runs["packed"]["final_loss"] == runs["per-video"]["final_loss"]


def test_status_counts_shards_failures_and_a_lagging_manifest(tmp_path: Path) -> None:
    store = tmp_path / "feats"
    write_store(store, make_store(videos=3))
    (store / "failures" / "bad.json").write_text(json.dumps({"video_id": "bad", "reason": "truncated file"}))
    write_shard_progress(
        store, ShardProgress((0, 2), "elsewhere", 1, "running", 0.0, 0.0, 5, done=2, failed=1)
    )
    shutil.rmtree(store / "videos" / "vid2")
    result = CliRunner().invoke(app, ["store", "status", str(store), "--json"])
    assert result.exit_code == 1  # a video failed
    report = json.loads(result.stdout)
    assert (report["videos"], report["failed"], report["manifest_videos"]) == (2, 1, 3)
    assert report["shards"][0]["remaining"] == 2 and report["missing_shards"] == ["1/2"]
    assert not report["manifest_current"]
    table = CliRunner().invoke(app, ["store", "status", str(store), "--rebuild-manifest"])
    assert (
        "failed" in table.stdout and "truncated file" in table.stdout and "never started: 1/2" in table.stdout
    )
    assert json.loads((store / "manifest.json").read_text())["counts"]["videos"] == 2


def test_status_of_a_folder_that_is_no_store_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["store", "status", str(tmp_path)])
    assert result.exit_code != 0 and "no store.json" in str(result.exception)
