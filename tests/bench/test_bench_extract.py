"""``stg bench extract``: the cases, and a real quick run of decode and decode + tiny features."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from stg_cli.bench import extract as bench_extract
from stg_cli.bench import run_benchmarks
from stg_cli.cli import app


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No CLIP or S3D weights configured; generated videos cached under ``tmp_path``."""
    monkeypatch.delenv("STG_CLIP_WEIGHTS", raising=False)
    monkeypatch.delenv("STG_S3D_WEIGHTS", raising=False)
    monkeypatch.setenv("STG_BENCH_CACHE", str(tmp_path))


def test_cases_count_video_frames_and_skip_missing_weights(no_weights):
    cases = bench_extract.cases(True, torch.device("cpu"))
    assert [case.shape.split(",")[0] for case in cases] == ["tiny", "clip-vit-b32", "s3d-milnce"]
    assert [variant.name for variant in cases[0].variants] == ["decode", "decode + features"]
    for case in cases:
        assert case.units_per_call == bench_extract.QUICK_SECONDS * bench_extract.VIDEO_FPS
        assert case.unit == "video frames"
    for case, variable in zip(cases[1:], ["STG_CLIP_WEIGHTS", "STG_S3D_WEIGHTS"]):
        assert len(case.variants) == 1
        reason = case.variants[0].setup()
        assert isinstance(reason, str) and variable in reason
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
    for backbone in ("clip-vit-b32", "s3d-milnce"):
        skipped = [row for (name, _), row in rows.items() if name == backbone]
        assert len(skipped) == 1
        assert skipped[0].median_ms is None and skipped[0].throughput is None
        assert "weights" in (skipped[0].note or "")


def test_table_has_a_frames_per_second_column(no_weights, monkeypatch):
    monkeypatch.setattr(bench_extract, "QUICK_SECONDS", 2)
    result = CliRunner().invoke(app, ["bench", "extract", "--quick", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "video frames/s" in result.stdout
