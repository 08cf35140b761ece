"""stg info: the facts, as a table and as JSON."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

import stg_cli
from stg_cli import info
from stg_cli.cli import app
from stg_cli.ops import _native


def test_collect_reports_versions_and_extension():
    facts = info.collect()
    assert facts.stg == stg_cli.__version__
    assert facts.torch == torch.__version__
    assert facts.extension_loaded == _native.status().loaded
    assert facts.devices[0].startswith("cpu")
    if facts.extension_loaded:
        assert facts.extension_build["torch_version"] == torch.__version__
        assert "cpu" in facts.native_kernels["sinkhorn"]
    else:
        assert facts.extension_reason


def test_info_json_is_machine_readable():
    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["torch"] == torch.__version__
    assert set(payload["native_kernels"]) >= {"sinkhorn", "xattn", "rollout", "rollout_paper"}


def test_info_table_names_the_extension_state():
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0
    assert "extension" in result.stdout
    assert ("loaded" in result.stdout) or ("not loaded" in result.stdout)
