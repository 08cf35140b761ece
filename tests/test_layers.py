"""The import graph has no upward import and no cycle (tools/check_layers.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_only_point_down_and_never_cycle():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_layers.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 problem(s)" in result.stdout
