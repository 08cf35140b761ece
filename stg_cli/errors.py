"""The error type for mistakes a user can fix (the CLI prints it as one red line), and how any
error becomes one line of text."""

from __future__ import annotations

import re


class UserError(ValueError):
    """Bad input: a missing file, an unknown option value, a malformed annotation. A
    ValueError, so that Python callers that catch bad values catch it too; the command line
    reports it as one line with exit code 2 (any other ValueError is a bug: exit 1)."""


def fold_lines(text: str) -> str:
    """``text`` on one line: each run of whitespace that holds a line break becomes one space,
    so that a multi-line message (a state-dict mismatch, a decoder's log) keeps all its detail."""
    return re.sub(r"\s*\n\s*", " ", text).strip()


def error_text(error: BaseException) -> str:
    """An error's message on one line (:func:`fold_lines`), or its type's name when it has
    none."""
    return fold_lines(str(error)) or type(error).__name__
