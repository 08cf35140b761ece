"""The ``stg`` command line: one Typer command per module in :mod:`stg_cli.commands`."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from stg_cli.commands import bench, demo, extract, ground, info, score, synth, train
from stg_cli.errors import UserError

app = typer.Typer(
    name="stg",
    help="Self-supervised spatio-temporal grounding of actions in narrated instructional videos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("info")(info.command)
app.command("bench")(bench.command)
app.command("demo")(demo.command)
app.command("extract")(extract.command)
app.command("ground")(ground.command)
app.command("score")(score.command)
app.command("synth")(synth.command)
app.command("train")(train.command)

_stderr = Console(stderr=True)


def main() -> None:
    """Entry point: user errors become one red line and exit code 2 (STG_DEBUG=1: traceback).

    Usage errors (unknown command or option) are reported by Typer itself with exit code 2.
    """
    try:
        app()
    except KeyboardInterrupt:
        _stderr.print("[red]interrupted[/red]")
        sys.exit(130)
    except (UserError, ValueError, RuntimeError, OSError) as error:
        if os.environ.get("STG_DEBUG") == "1":
            raise
        _stderr.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as error:
        if os.environ.get("STG_DEBUG") == "1":
            raise
        _stderr.print(
            f"[red]error:[/red] {type(error).__name__}: {error} (STG_DEBUG=1 shows the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
