"""The ``stg`` command line: one Typer command per module in :mod:`stg_cli.commands`."""

from __future__ import annotations

import os
import sys

import typer

import stg_cli
from stg_cli.commands import bench, demo, extract, ground, info, score, store, synth, train
from stg_cli.errors import UserError, error_text
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
app.add_typer(store.app, name="store")
app.command("synth")(synth.command)
app.command("train")(train.command)

_stderr = console(stderr=True)


# OSErrors about a path the user named: fixed by changing an argument, so user errors
PATH_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def main() -> None:
    """Entry point; each error is one line on stderr (never read as rich markup, control
    characters escaped, line breaks folded: :func:`stg_cli.terminal.error_line`) and an exit code
    that says whose it is:

    - 2: a user error (:class:`UserError`, a path that does not exist or cannot be used); Typer
      reports usage errors (unknown command or option) with 2 too;
    - 1: out of memory, another system error (disk full, I/O), or an internal error, which the
      line names with its type and the hint that ``STG_DEBUG=1`` shows the traceback;
    - 130: Ctrl-C.

    ``STG_DEBUG=1`` re-raises every error with its traceback.
    """
    debug = os.environ.get("STG_DEBUG") == "1"
    try:
        app()
    except KeyboardInterrupt:
        _stderr.print("[red]interrupted[/red]")
        sys.exit(130)
    except (MemoryError, torch_out_of_memory()) as error:
        if debug:
            raise
        detail = "" if isinstance(error, MemoryError) else f" ({error_text(error)})"
        _stderr.print(
            error_line(
                f"out of memory: the input or the settings ask for more memory than this machine has{detail}"
            ),
            soft_wrap=True,
        )
        sys.exit(1)
    except (UserError, *PATH_ERRORS) as error:
        if debug:
            raise
        _stderr.print(error_line(error), soft_wrap=True)
        sys.exit(2)
    except OSError as error:
        if debug:
            raise
        _stderr.print(error_line(error), soft_wrap=True)
        sys.exit(1)
    except Exception as error:
        if debug:
            raise
        _stderr.print(
            error_line(f"internal error, {type(error).__name__}: {error} (STG_DEBUG=1 shows the traceback)"),
            soft_wrap=True,
        )
        sys.exit(1)


def torch_out_of_memory() -> type[BaseException]:
    """torch's out-of-memory error when torch was imported (a command ran), else MemoryError."""
    torch = sys.modules.get("torch")
    return getattr(torch, "OutOfMemoryError", MemoryError) if torch is not None else MemoryError
