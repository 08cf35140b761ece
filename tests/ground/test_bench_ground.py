"""``stg bench ground``: the cases, the generated video and a real (small) run of every stage."""

from __future__ import annotations

import av
import pytest
import torch

from stg_cli import bench
from stg_cli.bench import ground as bench_ground
from stg_cli.bench import resolve_names, run_benchmarks
from stg_cli.bench.common import benchmark_video


def test_ground_is_a_benchmark():
    assert resolve_names(["ground"]) == ["ground"]


def test_cases_time_every_stage_and_skip_missing_weights(monkeypatch):
    monkeypatch.delenv("STG_CLIP_WEIGHTS", raising=False)
    monkeypatch.delenv("STG_S3D_WEIGHTS", raising=False)
    cases = bench_ground.cases(True, torch.device("cpu"))
    assert [case.shape.split(",")[0] for case in cases][:3] == ["tiny", "clip-vit-b32", "s3d-milnce"]
    assert [variant.name for variant in cases[0].variants] == list(bench_ground.STAGE_NAMES)
    assert all("ms per video-minute" in case.shape for case in cases)
    assert [variant.name for variant in cases[1].variants] == ["all stages"]
    skipped = cases[1].variants[0].setup()
    assert isinstance(skipped, str) and "STG_CLIP_WEIGHTS" in skipped


def test_benchmark_video_is_generated_once(tmp_path):
    path = benchmark_video(tmp_path / "v.mp4", width=64, height=48, seconds=2, fps=10)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 48)
        assert sum(1 for _ in container.decode(stream)) == 20
    stamp = path.stat().st_mtime_ns
    assert benchmark_video(path, width=64, height=48, seconds=2, fps=10) == path
    assert path.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_small_run_times_every_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("STG_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(bench_ground, "WIDTH", 160)
    monkeypatch.setattr(bench_ground, "HEIGHT", 120)
    monkeypatch.setattr(bench_ground, "MINUTES", 1)
    monkeypatch.setattr(bench_ground, "VIDEO_FPS", 10)
    monkeypatch.setitem(bench.BENCHMARKS, "ground", _tiny_only(bench_ground.cases))
    bench_ground._bench.cache_clear()
    try:
        report = run_benchmarks(["ground"], quick=True, device="cpu")
    finally:
        bench_ground._bench.cache_clear()
    rows = {row.variant: row for row in report.results if row.shape.startswith("tiny")}
    assert set(rows) == set(bench_ground.STAGE_NAMES)
    for row in rows.values():
        assert row.median_ms is not None and row.median_ms > 0, row
        assert row.peak_mb is not None


def _tiny_only(cases):
    def only(quick, device):
        return [case for case in cases(quick, device) if case.shape.startswith("tiny")]

    return only
