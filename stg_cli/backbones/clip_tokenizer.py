"""CLIP's byte-level BPE tokenizer, without ftfy, regex or transformers.

Vocabulary sources: a Hugging Face CLIP folder (``vocab.json`` + ``merges.txt``) or OpenAI's
``bpe_simple_vocab_16e6.txt.gz`` (merges only; the vocabulary is rebuilt the way OpenAI's
tokenizer does: the 256 byte symbols, the same with ``</w>``, one entry per merge, then
``<|startoftext|>`` and ``<|endoftext|>``).

Text is first normalised by ``stg_cli.text.normalize.normalize_text`` (which also does what CLIP's
ftfy/html/whitespace cleaning does for ASR text), then split into words the way CLIP's pattern
does — contractions, runs of letters, single digits, runs of other symbols — using the standard
``re`` module: ``[^\\W\\d_]`` stands for CLIP's ``\\p{L}`` and ``\\d`` for ``\\p{N}``.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from pathlib import Path

from stg_cli.errors import UserError
from stg_cli.text.normalize import normalize_text

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
WORD_END = "</w>"
OPENAI_MERGES = 49152 - 256 - 2  # how many merge lines OpenAI's tokenizer reads from the gz file

_WORDS = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def byte_symbols() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from each byte to a printable unicode character."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


class CLIPTokenizer:
    """Byte-level BPE with CLIP's word-end marker; ``encode`` gives ids, ``pieces`` strings."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.id_to_piece = {i: piece for piece, i in vocab.items()}
        try:
            self.start_id = vocab[START_TOKEN]
            self.end_id = vocab[END_TOKEN]
        except KeyError as exc:
            raise UserError(f"CLIP vocabulary lacks the special token {exc}") from None
        self._cache: dict[str, list[str]] = {}
        self._bytes = byte_symbols()
        self._inverse = {symbol: b for b, symbol in self._bytes.items()}

    def _bpe(self, word: str) -> list[str]:
        """BPE pieces of one word (already mapped to byte symbols); the last carries ``</w>``."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word[:-1]) + [word[-1] + WORD_END]
        while len(parts) > 1:
            ranked = [
                (self.ranks.get((parts[i], parts[i + 1]), float("inf")), i) for i in range(len(parts) - 1)
            ]
            best_rank, _ = min(ranked)
            if best_rank == float("inf"):
                break
            first, second = next((parts[i], parts[i + 1]) for r, i in ranked if r == best_rank)
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        if len(self._cache) < 100_000:
            self._cache[word] = parts
        return parts

    def pieces(self, text: str) -> list[str]:
        """BPE piece strings of ``text`` after normalisation (no start/end tokens)."""
        out: list[str] = []
        for word in _WORDS.findall(normalize_text(text)):
            symbols = "".join(self._bytes[b] for b in word.encode("utf-8"))
            out.extend(self._bpe(symbols))
        return out

    def encode(self, text: str, context_length: int) -> tuple[list[int], list[str]]:
        """``[start] + piece ids + [end]`` cut to ``context_length`` (the end token always kept).

        Returns the ids and the piece strings of the kept pieces (``</w>`` stripped, bytes decoded).
        """
        pieces = self.pieces(text)[: max(context_length - 2, 0)]
        ids = [self.start_id]
        for piece in pieces:
            if piece not in self.vocab:
                raise UserError(f"CLIP vocabulary lacks the BPE piece {piece!r}: a broken vocab file")
            ids.append(self.vocab[piece])
        ids.append(self.end_id)
        return ids, [self.readable(p) for p in pieces]

    def readable(self, piece: str) -> str:
        """A piece as text: byte symbols decoded, the word-end marker removed."""
        raw = bytes(self._inverse.get(c, 63) for c in piece.removesuffix(WORD_END))
        return raw.decode("utf-8", errors="replace")


def load_tokenizer(folder: Path) -> CLIPTokenizer:
    """The tokenizer from ``vocab.json`` + ``merges.txt`` or ``bpe_simple_vocab_16e6.txt.gz`` in
    ``folder``."""
    vocab_json, merges_txt = folder / "vocab.json", folder / "merges.txt"
    gz = sorted(folder.glob("bpe_simple_vocab*.txt.gz"))
    try:
        if vocab_json.exists() and merges_txt.exists():
            vocab = json.loads(vocab_json.read_text(encoding="utf-8"))
            lines = merges_txt.read_text(encoding="utf-8").split("\n")
            merges = _parse_merges(lines[1:] if lines and lines[0].startswith("#") else lines)
            return CLIPTokenizer(vocab, merges)
        if gz:
            lines = gzip.open(gz[0], "rt", encoding="utf-8").read().split("\n")
            merges = _parse_merges(lines[1 : OPENAI_MERGES + 1])
            return CLIPTokenizer(openai_vocab(merges), merges)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"unreadable CLIP tokenizer files in {folder}: {exc}") from None
    raise UserError(
        f"no CLIP tokenizer in {folder}: need vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz"
    )


def openai_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """OpenAI's vocabulary order: bytes, bytes + ``</w>``, merges, start, end."""
    symbols = list(byte_symbols().values())
    pieces = symbols + [s + WORD_END for s in symbols] + ["".join(m) for m in merges]
    pieces += [START_TOKEN, END_TOKEN]
    return {piece: i for i, piece in enumerate(pieces)}


def _parse_merges(lines: list[str]) -> list[tuple[str, str]]:
    merges = []
    for line in lines:
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"bad merge line {line!r}")
        merges.append((parts[0], parts[1]))
    return merges
