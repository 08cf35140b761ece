"""The ``stg`` command line: one Typer command per module in :mod:`stg_cli.commands`."""

from __future__ import annotations

import os
import sys

import typer

import stg_cli

from stg_cli.commands import bench, demo, extract, ground, info, score, synth, train
from stg_cli.errors import UserError
from stg_cli.terminal import console, error_line

app = typer.Typer(
    name="stg",
    help="Self-supervised spatio-temporal grounding of actions in narrated instructional videos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"stg {stg_cli.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print stg's version and exit."
    ),
) -> None:
    """stg's own options; each command imports the library (and torch) only when it runs."""

app.command("info")(info.command)
app.command("bench")(bench.command)
app.command("demo")(demo.command)
app.command("extract")(extract.command)
app.command("ground")(ground.command)
app.command("score")(score.command)
app.command("synth")(synth.command)
app.command("train")(train.command)

_stderr = console(stderr=True)


def main() -> None:
    """Entry point: user errors become one red line and exit code 2 (STG_DEBUG=1: traceback).

    The line is the error's message as it is (never read as rich markup, control characters
    escaped, line breaks folded: :func:`stg_cli.terminal.error_line`).

    Usage errors (unknown command or option) are reported by Typer itself with exit code 2.
    """
    try:
        app()
    except KeyboardInterrupt:
        _stderr.print("[red]interrupted[/red]")
        sys.exit(130)
    except MemoryError:
        if os.environ.get("STG_DEBUG") == "1":
            raise
        _stderr.print(error_line("out of memory: the input or the settings ask for more memory "
                                 "than this machine has"), soft_wrap=True)
        sys.exit(1)
    except (UserError, ValueError, RuntimeError, OSError) as error:
        if os.environ.get("STG_DEBUG") == "1":
            raise
        _stderr.print(error_line(error), soft_wrap=True)
        sys.exit(2)
    except Exception as error:
        if os.environ.get("STG_DEBUG") == "1":
            raise
        _stderr.print(
            error_line(f"{type(error).__name__}: {error} (STG_DEBUG=1 shows the traceback)"),
            soft_wrap=True,
        )
        sys.exit(1)
