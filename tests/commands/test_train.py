"""``stg train`` from the command line: a run, its JSON, resume, errors, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers.stores import make_store, write_store
from helpers.training import SMALL_MODEL, write_training_store
from stg_cli.cli import app, main

SMALL = [*SMALL_MODEL, "--log-every", "1"]


@pytest.fixture(scope="module")
def feats(tmp_path_factory) -> Path:
    return write_training_store(tmp_path_factory.mktemp("feats") / "store")


def run_main(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setenv("STG_DEBUG", "0")
    monkeypatch.setattr(sys, "argv", ["stg", "train", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_train_json_and_resume(feats, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", str(feats), "--out", str(run), "--steps", "3", *SMALL, "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 3 and summary["samples"] == 24 and summary["world_size"] == 1
    assert (run / "export" / "model.safetensors").exists() and (run / "loss.png").exists()
    assert (run / "export" / "text_encoder" / "text_encoder.json").read_text() == "{}"
    config = json.loads((run / "config.json").read_text())
    assert config["store"]["visual_dim"] == 12 and config["model"]["dim"] == 16
    again = CliRunner().invoke(app, ["train", str(feats), "--out", str(run), "--steps", "3", *SMALL])
    assert again.exit_code != 0 and "already holds a training run" in str(again.exception)
    resumed = CliRunner().invoke(app, ["train", str(feats), "--out", str(run), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "steps" in resumed.stdout


def test_a_settings_file_sets_the_run_and_options_override_it(feats, tmp_path):
    settings = tmp_path / "run.toml"
    settings.write_text(
        "[train]\nsteps = 2\nbatch_size = 8\nlocal_chunk = 4\nlr = 0.005\n\n"
        "[model]\ndim = 16\nframes_u = 8\nframes_t = 4\ncross_logits = 'dot'\n"
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(feats),
            "--out",
            str(run),
            "--config",
            str(settings),
            "--lr",
            "0.002",
            "--negatives",
            "same-video",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["steps"] == 2 and config["train"]["lr"] == 0.002
    assert config["train"]["negatives"] == "same-video"
    assert config["model"]["dim"] == 16 and config["model"]["cross_logits"] == "dot"
    assert config["train"]["margin"] == 0.1  # the dataclass default, neither file nor option


def test_resume_on_other_features_is_one_red_line(feats, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert (
        CliRunner().invoke(app, ["train", str(feats), "--out", str(run), "--steps", "2", *SMALL]).exit_code
        == 0
    )
    other = write_store(tmp_path / "other", make_store(visual_dim=16))
    code, err = run_main(monkeypatch, capsys, other.root, "--out", run, "--resume")
    assert code == 2 and "Traceback" not in err
    assert "visual 12-d" in err and "visual 16-d" in err.replace("\n", "")


def test_missing_or_empty_store_is_a_clear_error(tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, tmp_path / "nowhere", "--out", tmp_path / "run")
    assert code == 2 and "feature store not found" in err
    empty = make_store(videos=1)
    empty.load("vid0").word_mask[:] = False
    write_store(tmp_path / "empty", empty)
    code, err = run_main(monkeypatch, capsys, tmp_path / "empty", "--out", tmp_path / "run2")
    assert code == 2 and "no training sample" in err


def test_bad_options_are_user_errors(feats, tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, feats, "--out", tmp_path / "r", "--select", "random")
    assert code == 2 and "select" in err
    code, err = run_main(monkeypatch, capsys, feats, "--out", tmp_path / "r", "--batch-size", "100")
    assert code == 2 and "fewer than the batch size" in err
    code, err = run_main(monkeypatch, capsys, feats, "--out", tmp_path / "r", "--negatives", "hard")
    assert code == 2 and "--negatives must be one of any, same-video" in err


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun not installed"
)
def test_torchrun_two_processes(feats, tmp_path):
    run = tmp_path / "run"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "stg_cli",
            "train",
            str(feats),
            "--out",
            str(run),
            "--steps",
            "3",
            *SMALL,
            "--device",
            "cpu",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["world_size"] == 2 and summary["steps"] == 3
    state = json.loads((run / "summary.json").read_text())
    assert state["world_size"] == 2


@pytest.mark.slow
def test_eval_scores_a_labelled_split_at_checkpoints_and_the_end(tmp_path):
    from stg_cli.features.extract import ExtractOptions, extract
    from stg_cli.synth import generate
    from stg_cli.synth.config import SynthConfig

    bench = tmp_path / "synth"
    generate(bench, SynthConfig.quick(train_videos=4, test_videos=2, min_duration=20, max_duration=24))
    extract(
        [bench / "train" / "videos"], bench / "train" / "captions.json", tmp_path / "feats", ExtractOptions()
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(tmp_path / "feats"),
            "--out",
            str(run),
            "--steps",
            "4",
            "--checkpoint-every",
            "2",
            "--eval",
            str(bench / "test"),
            *SMALL_MODEL,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "eval at step 4: temporal IoU" in result.output
    assert "model-free priors on the eval split (pointing, true timing): centre" in result.output
    priors = json.loads((run / "eval-priors.json").read_text())
    assert set(priors["scores"]) == {"centre", "random", "motion", "centred_energy"}
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4]
    for row in rows:
        for key in (
            "temporal_iou",
            "iou_point",
            "map_mean",
            "pointing_game",
            "pointing_true_timing",
            "pointing_wrong_query",
            "pointing_distractor_query",
        ):
            assert 0.0 <= row[key] <= 100.0, (key, row)
        assert row["failed"] == 0 and np.isfinite(row["tau"])
    assert (run / "eval" / "true-timing" / "predictions.json").is_file()
    best = max(rows, key=lambda row: (row["iou_point"], -row["step"]))  # the first best
    assert torch.load(run / "checkpoints" / "best.pt", weights_only=True)["step"] == best["step"]
    card = (run / "export" / "README.md").read_text()
    assert "at step 4 (`stg train --eval`)" in card and "| IoU+Point |" in card
    assert "calibrated on the training clips" in card and "prior, no model: centred energy" in card
    assert "prior, no model: uniform split" in card


def test_eval_of_a_folder_that_is_no_split_is_a_user_error(feats, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(feats),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "2",
            *SMALL,
            "--eval",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0
    assert "not a labelled split" in str(result.exception)
