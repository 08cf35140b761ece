"""``stg demo`` end to end on a small synthetic benchmark: every stage runs, the outputs are
valid, and training improves on the untrained model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from stg_cli.cli import app
from stg_cli.demo import DemoPreset, preset, run_demo
from stg_cli.errors import UserError
from stg_cli.features import FeatureStore
from stg_cli.metrics.predictions import load_predictions
from stg_cli.synth.config import SynthConfig
from stg_cli.video import probe

# The first synthetic world (no distractors): there 120 steps of training reliably beat the
# untrained model, which checks the pipeline; what the method does on the default world with
# distractors is measured, not asserted (benchmarks/RESULTS.md).
SMALL = DemoPreset(
    name="small",
    synth=SynthConfig.quick(train_videos=16, test_videos=4, min_duration=30, max_duration=40, distractors=0),
    model_options={"dim": 64, "frames_u": 8, "frames_t": 4},
    steps=120,
    batch_size=32,
    local_chunk=8,
)


@pytest.mark.slow
def test_small_demo_runs_every_stage_and_training_helps(tmp_path):
    stages: dict[str, tuple[int, int]] = {}
    report = run_demo(
        tmp_path / "demo",
        SMALL,
        on_stage=lambda stage, done, total, detail: stages.update({stage: (done, total)}),
    )

    assert set(stages) == {"synth", "extract", "train", "ground", "score"}
    assert all(done == total for done, total in stages.values())
    assert report.train_steps == SMALL.steps and report.final_loss < report.first_loss
    assert report.failed_videos == []

    names = [
        "trained",
        "untrained",
        "uniform",
        "trained_true_timing",
        "trained_wrong_query",
        "trained_distractor_query",
        "untrained_true_timing",
        "centre",
        "random",
        "motion",
        "centred_energy",
    ]
    assert [row.name for row in report.rows] == names
    for row in report.rows:
        for key, value in row.metrics.items():
            assert value is None or 0.0 <= value <= 100.0, (row.name, key, value)
    trained, untrained, centre = (report.row(name).metrics for name in ("trained", "untrained", "centre"))
    assert trained["temporal_iou"] > untrained["temporal_iou"]
    assert centre["temporal_iou"] is None and centre["map@0.1"] > 0
    for name in ("trained_wrong_query", "motion", "centred_energy"):
        assert report.row(name).metrics["pointing_game"] is not None, name
    assert report.row("trained_distractor_query").metrics["pointing_game"] is None
    assert report.row("trained_wrong_query").metrics["map@0.1"] is None
    uniform = report.row("uniform").metrics
    assert uniform["temporal_iou"] > 0 and uniform["pointing_game"] is None
    # given the true segments, every annotated frame gets a point: the pointing game is over
    # the same frames as the priors', and the true-timing rows predict no timing
    for name in ("trained_true_timing", "untrained_true_timing"):
        metrics = report.row(name).metrics
        assert metrics["temporal_iou"] is None and metrics["map@0.1"] > 0

    predictions = load_predictions(tmp_path / "demo" / "ground" / "trained" / "predictions.json")
    assert len(predictions) == SMALL.synth.test_videos
    # the groundings read the test videos' features from their own store, encoded like training's
    test_store = FeatureStore.open(tmp_path / "demo" / "test-features")
    assert sorted(test_store.video_ids) == sorted(predictions)
    train_store = FeatureStore.open(tmp_path / "demo" / "features")
    assert test_store.config.fingerprint == train_store.config.fingerprint
    for prediction in predictions.values():
        for segment in prediction.segments:
            assert 0 <= segment.start <= segment.end <= prediction.duration
    info = probe(report.overlay)
    assert info.width > 0 and info.duration > 0
    assert report.timeline.stat().st_size > 0
    saved = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert [row["name"] for row in saved["rows"]] == names

    again = run_demo(tmp_path / "demo", SMALL)
    assert again.stage_seconds["train"] < report.stage_seconds["train"]
    assert again.row("trained").metrics == report.row("trained").metrics

    # the paper's inference protocol: a fixed τ instead of each model's calibrated one
    fixed = run_demo(tmp_path / "demo", replace(SMALL, tau=0.5, smooth=0))
    assert report.thresholds["trained"] != 0.5
    assert fixed.thresholds == {"trained": 0.5, "untrained": 0.5}


def test_presets_train_each_backbone_with_its_measured_settings():
    from stg_cli.demo import BACKBONE_MODEL_OPTIONS
    from stg_cli.models.config import ModelConfig

    default = preset("quick")
    assert (default.backbone, default.text, default.heatmap) == ("effnet-lite0", "word2vec", "auto")
    model = ModelConfig(visual_dim=1280, text_dim=300, **default.model_options)
    assert model.local_projections == "shared" and not model.center_video
    assert model.cross_temperature == 0.2 and model.default_heatmap == "paper"
    tiny = preset("full", backbone="tiny", text="minilm")
    assert (tiny.backbone, tiny.text) == ("tiny", "minilm")
    assert ModelConfig(visual_dim=8, text_dim=8, **tiny.model_options).default_heatmap == "global"
    assert set(tiny.model_options) == {"dim", "frames_u", "frames_t"}
    assert preset("full").model_options == {**tiny.model_options, **BACKBONE_MODEL_OPTIONS["effnet-lite0"]}


def test_unknown_preset_is_a_user_error():
    with pytest.raises(UserError, match="nope"):
        preset("nope")


def test_quick_and_full_together_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--quick", "--full", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "choose one" in str(result.exception) + result.output


def test_table_shows_every_row_and_a_dash_for_missing_metrics(tmp_path):
    from rich.console import Console

    from stg_cli.commands.demo import SCORE_COLUMNS, render
    from stg_cli.demo import TEMPORAL_METRIC, DemoReport, DemoRow

    metrics = {key: 12.5 for key in [*SCORE_COLUMNS, TEMPORAL_METRIC]}
    rows = [
        DemoRow("trained", dict(metrics)),
        DemoRow("untrained", {**metrics, "map@0.1": 3.25}),
        DemoRow("trained_true_timing", {**metrics, "temporal_iou": None}),
        DemoRow("centre", {**metrics, "temporal_iou": None}),
    ]
    report = DemoReport(
        out=tmp_path,
        preset="quick",
        rows=rows,
        stage_seconds={"train": 1.0},
        overlay=tmp_path / "v.overlay.mp4",
        timeline=None,
        train_steps=3,
        final_loss=1.0,
        first_loss=2.0,
        test_videos=2,
        notes=["model-free priors point within 5 points"],
        backbone="effnet-lite0",
        heatmap="paper",
    )
    console = Console(record=True, width=100)
    render(report, console)
    text = console.export_text()
    expected = (
        "untrained",
        "3.25",
        "given true timing",
        "12.50",
        "v.overlay.mp4",
        "loss 2.00 → 1.00",
        "effnet-lite0 + word2vec",
        "(paper chain)",
    )
    for fragment in expected:
        assert fragment in text
    lines = text.splitlines()
    assert lines[0].startswith("note: model-free priors point within 5 points")
    given = next(index for index, line in enumerate(lines) if "given true timing" in line)
    assert any(line.startswith("│ trained ") for line in lines[:given])
    assert lines[given + 1].startswith("│ trained ") and lines[given + 2].startswith("│ centre point")
    assert lines[given + 2].rstrip(" │").endswith("-")
