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


def test_version_prints_the_package_version():
    import stg_cli

    result = run_stg("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"stg {stg_cli.__version__}"


def test_shell_completion_is_offered():
    assert "--install-completion" in run_stg("--help").stdout


COMMANDS = ("info", "bench", "demo", "extract", "ground", "score", "store", "synth", "train")


@pytest.mark.parametrize("args", [("--help",), ("--version",), *((name, "--help") for name in COMMANDS)])
def test_help_and_version_import_neither_torch_nor_numpy(args):
    """What keeps --help fast: the commands import the library only when they run."""
    probe = (
        "import sys\n"
        "from stg_cli.cli import app\n"
        f"try:\n    app({list(args)!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(name for name in ('torch', 'numpy', 'scipy', 'av') if name in sys.modules)\n"
        "print('heavy:', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "heavy: []" in result.stderr, result.stderr[-2000:]


def test_defaults_are_the_ones_the_library_uses():
    """stg_cli.defaults is the one home of the values --help shows."""
    from stg_cli import defaults
    from stg_cli.synth.config import DIFFICULTIES

    assert tuple(DIFFICULTIES) == defaults.DIFFICULTY_LEVELS
