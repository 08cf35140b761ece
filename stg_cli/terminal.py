"""What stg prints to a terminal: consoles, and text from outside (file names, error messages,
captions) made safe to print.

Text stg did not write itself can hold rich markup (``[/x/pair.cc:553]`` in a gloo error would
be read as a closing tag and make rich raise), emoji codes (``:x:``) and control characters (an
ANSI escape in a video's file name would recolour or move the terminal's cursor). Every command
prints through :func:`console` and passes such text through :func:`escape`; errors become one
line with :func:`error_line`.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.text import Text

from stg_cli.errors import fold_lines

# C0 controls but tab and newline, DEL and the C1 controls
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def console(stderr: bool = False, quiet: bool = False) -> Console:
    """A rich console for stdout (or stderr; ``quiet``: prints nothing) that never turns
    ``:name:`` into an emoji."""
    return Console(stderr=stderr, quiet=quiet, emoji=False)


def printable(text: object) -> str:
    """``str(text)`` with each control character but tab and newline written as ``\\xNN``."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(text))


def escape(text: object) -> str:
    """``str(text)`` to embed in a rich markup string: control characters written as ``\\xNN``
    and markup brackets escaped, so that it prints exactly as it is."""
    return escape_markup(printable(text))


def error_line(message: object, label: str = "error:") -> Text:
    """``label message`` as a rich Text (no markup parsing, no emoji): the red label, then the
    message on one line with all its detail (:func:`stg_cli.errors.fold_lines`), control
    characters escaped (:func:`printable`)."""
    return Text.assemble((label, "red"), " ", printable(fold_lines(str(message))))
