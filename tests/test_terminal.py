"""Text from outside printed as it is: no markup, no emoji, control characters escaped."""

from __future__ import annotations

import io

import pytest

from stg_cli import terminal
from stg_cli.errors import UserError

HOSTILE = "gloo [/opt/pair.cc:553] :x: [bold]name\x1b[31m\x07 end"


def render(renderable, markup: bool = True) -> str:
    console = terminal.console()
    console.file = io.StringIO()
    console.print(renderable, soft_wrap=True, highlight=False, markup=markup)
    return console.file.getvalue()


def test_printable_escapes_control_characters_but_tab_and_newline():
    assert terminal.printable("a\x1b[31mb\x07\x7f\x9b\tc\nd") == "a\\x1b[31mb\\x07\\x7f\\x9b\tc\nd"
    assert terminal.printable(3) == "3"


def test_escaped_text_prints_exactly_inside_markup():
    printed = render(f"[red]error:[/red] {terminal.escape(HOSTILE)}")
    assert printed == "error: " + terminal.printable(HOSTILE) + "\n"
    assert "\x1b" not in printed and "❌" not in printed


def test_the_consoles_never_print_emoji():
    assert render(":x: :thumbs_up:") == ":x: :thumbs_up:\n"


def test_error_line_is_one_line_with_every_detail():
    message = 'Error(s) in loading state_dict:\n\tMissing key(s): "w".\n\tUnexpected: "v".'
    printed = render(terminal.error_line(message))
    assert printed == 'error: Error(s) in loading state_dict: Missing key(s): "w". Unexpected: "v".\n'
    assert render(terminal.error_line(HOSTILE)) == "error: " + terminal.printable(HOSTILE) + "\n"


@pytest.mark.parametrize("error", [UserError(HOSTILE), ValueError(HOSTILE), KeyError(HOSTILE)])
def test_the_entry_point_prints_hostile_messages_as_one_line(monkeypatch, capsys, error):
    from stg_cli import cli

    def fail() -> None:
        raise error

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == (2 if isinstance(error, UserError) else 1)
    err = capsys.readouterr().err
    assert ("internal error" in err) == (not isinstance(error, UserError))
    assert len(err.strip().splitlines()) == 1
    assert "[/opt/pair.cc:553] :x: [bold]name\\x1b[31m\\x07 end" in err
    assert "\x1b" not in err and "Traceback" not in err


def test_running_out_of_memory_is_one_line(monkeypatch, capsys):
    from stg_cli import cli

    def fail() -> None:
        raise MemoryError

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "error: out of memory: the input or the settings ask for more memory than this machine has"
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (FileNotFoundError(2, "No such file or directory", "out/x.json"), 2),
        (PermissionError(13, "Permission denied", "/root/out"), 2),
        (OSError(28, "No space left on device"), 1),
        (RuntimeError("a bug"), 1),
    ],
)
def test_exit_codes_say_whose_error_it_is(monkeypatch, capsys, error, code):
    """2 for what the user can fix by changing an argument, 1 for the system and for bugs."""
    from stg_cli import cli

    def fail() -> None:
        raise error

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(error.args[-1]) in err
