from __future__ import annotations

import pytest

from stg_cli.text.normalize import normalize_text, tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Add the SALT.", ["add", "the", "salt"]),
        ("Um, uh so we  stir", ["so", "we", "stir"]),
        ("<c.colorE5E5E5>cut</c> the <00:00:01.000>onion", ["cut", "the", "onion"]),
        ("[Music] (applause) whisk", ["whisk"]),
        ("don't 'quote' it’s", ["don't", "quote", "it's"]),
        ("salt &amp; pepper", ["salt", "pepper"]),
        ("snake_case-words!!", ["snake", "case", "words"]),
        ("", []),
        ("?!... --", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_normalize_text_joins_tokens() -> None:
    assert normalize_text("  Peel   the\tPotato! ") == "peel the potato"
    assert normalize_text("um...") == ""
