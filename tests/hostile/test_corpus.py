"""Every case of the hostile-input corpus, run through ``stg``'s entry point: the expected exit
code, one error line that keeps its detail (never the catch-all handler, never a traceback, no
raw control characters), and the case's after-condition."""

from __future__ import annotations

import re
import sys

import pytest

from hostile.corpus import CASES, SECRET, build_base

CATCH_ALL = "STG_DEBUG=1 shows the traceback"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("hostile-base"))


def run_stg(arguments: list[str], monkeypatch, capfd) -> tuple[int, str, str]:
    from stg_cli.cli import main

    monkeypatch.setattr(sys, "argv", ["stg", *arguments])
    monkeypatch.delenv("STG_DEBUG", raising=False)
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capfd.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input_is_refused_cleanly(case, base, tmp_path, monkeypatch, capfd):
    arguments = case.build(base, tmp_path)
    code, out, err = run_stg(arguments, monkeypatch, capfd)
    assert code == case.exit_code, f"{case.finding}: exit {code}\n{out}\n{err}"
    assert CATCH_ALL not in err and "Traceback" not in err, err
    assert "\x1b" not in out and "\x1b" not in err
    assert SECRET not in out and SECRET not in err
    if case.exit_code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert re.search(case.message, lines[0]), lines[0]
    elif case.message:
        assert re.search(case.message, out + err), out + err
    if case.after is not None:
        case.after(tmp_path)
