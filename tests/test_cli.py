"""The stg entry point: help, errors as one red line, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_stg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stg_cli", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_commands():
    result = run_stg("--help")
    assert result.returncode == 0
    assert "info" in result.stdout and "bench" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("bench", "nosuchop"), "nosuchop"),
        (("info", "--no-such-flag"), "No such option"),
        (("nosuchcommand",), "No such command"),
    ],
)
def test_bad_calls_exit_non_zero_without_traceback(args, fragment):
    result = run_stg(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment in result.stderr + result.stdout


def test_debug_variable_shows_the_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "stg_cli", "bench", "nosuchop"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "STG_DEBUG": "1"},
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr
