"""Text normalisation shared by caption loading and every text encoder.

ASR narration is lower-cased, stripped of punctuation, markup and filler words ("um", "uh")
so that the same phrase maps to the same tokens whichever caption format it came from and
whichever encoder reads it. Apostrophes inside words are kept ("don't" stays one token);
digits are kept (quantities matter in recipes).
"""

from __future__ import annotations

import html
import re
import unicodedata

#: Hesitations and fillers that ASR transcribes but that never name an action or object.
FILLER_WORDS: frozenset[str] = frozenset(
    {"um", "umm", "uh", "uhh", "uhm", "erm", "er", "ah", "hmm", "hm", "mm", "mhm", "uh-huh"}
)

_TAG = re.compile(r"<[^>]*>")  # WebVTT/SRT inline markup: <c>, <i>, <00:00:01.000>
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)")  # [Music], (applause)
_NON_WORD = re.compile(r"[^\w']+")  # everything but letters, digits, underscore, apostrophe
_EDGE_APOSTROPHES = re.compile(r"(^'+|'+$)")


def tokenize(text: str) -> list[str]:
    """Normalised tokens of ``text``: lower-case words without punctuation, markup or fillers.

    >>> tokenize("Um, <i>Add</i> the SALT [Music] -- don't stir!")
    ['add', 'the', 'salt', "don't", 'stir']
    """
    text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("`", "'")
    text = _BRACKETED.sub(" ", _TAG.sub(" ", text)).lower().replace("_", " ")
    tokens = []
    for raw in _NON_WORD.split(text):
        token = _EDGE_APOSTROPHES.sub("", raw)
        if token and token not in FILLER_WORDS:
            tokens.append(token)
    return tokens


def normalize_text(text: str) -> str:
    """``text`` as its normalised tokens joined by single spaces ("" when nothing is left)."""
    return " ".join(tokenize(text))
