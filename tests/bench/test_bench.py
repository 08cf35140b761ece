"""The benchmark library and ``stg bench``: names, devices, a real quick run, JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stg_cli import bench
from stg_cli.cli import app
from stg_cli.errors import UserError


def test_all_expands_to_every_benchmark():
    assert bench.resolve_names(None) == bench.resolve_names(["all"])
    assert set(bench.resolve_names(["all"])) == {
        "sinkhorn",
        "xattn",
        "rollout",
        "score",
        "ground",
        "train",
        "extract",
    }


@pytest.mark.parametrize("name", ["nosuchop", "sinkhorn2"])
def test_unknown_or_missing_benchmarks_are_user_errors(name):
    with pytest.raises(UserError, match=name):
        bench.resolve_names([name])


def test_unknown_device_is_a_user_error():
    with pytest.raises(UserError, match="device"):
        bench.resolve_devices("tpu")


def test_quick_rollout_run_times_native_and_reference():
    report = bench.run_benchmarks(["rollout"], quick=True, device="cpu")
    rows = {(row.op, row.variant): row for row in report.results}
    for op in ("rollout", "rollout_paper"):
        for variant in ("native", "reference"):
            row = rows[(op, variant)]
            assert row.median_ms is not None and row.median_ms > 0
            assert row.peak_mb is not None and row.peak_mb >= 0
            assert row.repeats >= 3
            assert row.gb_per_s is not None and row.gb_per_s > 0
    assert rows[("rollout", "reference")].speedup_vs_reference == pytest.approx(1.0)
    rollout_target = [c for c in report.comparisons if c.op == "rollout" and c.target_min]
    assert rollout_target and rollout_target[0].ratio is not None
    assert report.machine.copy_gb_per_s["cpu"] > 0
    payload = report.to_dict()
    assert payload["machine"]["cpu_cores"] >= 1
    assert json.loads(json.dumps(payload))["results"]


def test_bench_command_prints_json():
    result = CliRunner().invoke(app, ["bench", "rollout", "--quick", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {row["op"] for row in payload["results"]} == {"rollout", "rollout_paper"}


def test_an_existing_out_file_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("earlier figures")
    refused = CliRunner().invoke(app, ["bench", "rollout", "--quick", "--out", str(out), "--device", "cpu"])
    assert "--overwrite" in str(refused.exception) and out.read_text() == "earlier figures"
    replaced = CliRunner().invoke(
        app, ["bench", "rollout", "--quick", "--out", str(out), "--overwrite", "--device", "cpu"]
    )
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(out.read_text())["results"]
