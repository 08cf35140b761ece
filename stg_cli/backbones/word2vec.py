"""``word2vec``: gensim word vectors as a text encoder.

Tokens come from ``stg_cli.text.normalize.tokenize`` (lower-case, no punctuation or fillers). A
token is looked up as-is, then capitalised (GoogleNews vectors are case-sensitive and hold many
words only capitalised); tokens found under neither are dropped. ``words`` are the vectors of the
first ``max_words`` known tokens; ``sentence`` is their mean. A sentence with no known token gets a
zero sentence row and an all-false mask.

Sources:

- a pretrained file: GoogleNews-format binary (``.bin``/``.bin.gz``), the word2vec text format
  (``.txt``/``.vec``, optionally gzipped); ``save`` records its absolute path and digest instead of
  copying gigabytes of vectors;
- ``train_word2vec(sentences)``: gensim ``Word2Vec`` (CBOW, window 5, min_count 1, 10 epochs)
  trained on the caption corpus itself; ``save`` writes the vectors (word2vec binary format)
  beside the features. Training is deterministic for a seed: one worker thread (no scheduling
  jitter), and a fixed string hash instead of Python's salted ``hash`` for initial vectors.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from stg_cli import files
from stg_cli.backbones.base import TEXT_CONFIG_FILE, TextEncoder, TextFeatures, pad_token_features
from stg_cli.errors import UserError
from stg_cli.text.normalize import tokenize

VECTORS_FILE = "word2vec.bin"


def _stable_hash(text: str) -> int:
    """A hash of a string that, unlike ``hash``, does not change between interpreter runs."""
    return zlib.crc32(text.encode("utf-8"))


class Word2VecEncoder(TextEncoder):
    """Mean-of-word-vectors sentence encoder over gensim ``KeyedVectors``."""

    name = "word2vec"

    def __init__(self, vectors, source: Path | None = None, fingerprint: str | None = None) -> None:
        self.vectors = vectors
        self.dim = int(vectors.vector_size)
        self.source = None if source is None else Path(source).resolve()
        self.fingerprint = fingerprint or f"word2vec:{_vectors_digest(vectors)}"

    def lookup(self, token: str) -> str | None:
        """The vocabulary key of ``token`` (as-is, then capitalised), or None when unknown."""
        for key in (token, token.capitalize()):
            if key in self.vectors.key_to_index:
                return key
        return None

    def encode(self, sentences: list[str]) -> TextFeatures:
        rows, tokens = [], []
        for text in sentences:
            keys = [k for k in (self.lookup(t) for t in tokenize(text)) if k is not None]
            keys = keys[: self.max_words]
            tokens.append(keys)
            if keys:
                rows.append(torch.from_numpy(np.stack([self.vectors[k] for k in keys])))
            else:
                rows.append(torch.zeros(0, self.dim))
        words, mask = pad_token_features(rows, self.dim, tokens)
        count = mask.sum(1, keepdim=True).clamp(min=1)
        sentence = words.sum(1) / count
        return TextFeatures(sentence=sentence, words=words, mask=mask, tokens=tokens)

    def _save_payload(self, directory: Path) -> dict:
        if self.source is not None:
            return {"weights": str(self.source)}
        with files.atomic_path(directory / VECTORS_FILE) as tmp:
            self.vectors.save_word2vec_format(str(tmp), binary=True)
        return {"vectors": VECTORS_FILE}


def _vectors_digest(vectors) -> str:
    h = hashlib.sha256()
    h.update("\n".join(vectors.index_to_key).encode("utf-8"))
    h.update(np.ascontiguousarray(vectors.vectors, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def _quick_file_digest(path: Path) -> str:
    """Digest of a (possibly multi-GB) file from its size and its first and last 16 MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 24))
        if size > 1 << 25:
            f.seek(size - (1 << 24))
            h.update(f.read())
    return h.hexdigest()[:16]


def load_word2vec(weights: Path | str | None) -> Word2VecEncoder:
    """Encoder from a word2vec file (binary or text); a folder written by ``save`` is read by
    :func:`stg_cli.backbones.load_text`."""
    if weights is None:
        raise UserError(
            "word2vec needs --weights with a GoogleNews-format .bin file "
            "(or train it on the captions instead)"
        )
    path = Path(weights).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder: a saved encoder is read by load_text('word2vec', folder)")
    if not path.exists():
        raise UserError(f"word2vec weights not found: {path}")
    from gensim.models import KeyedVectors

    suffixes = [s.lower() for s in path.suffixes]
    binary = not any(s in (".txt", ".vec") for s in suffixes)
    try:
        vectors = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    except Exception as exc:  # gensim raises ValueError/UnicodeDecodeError/EOFError/... on bad files
        kind = "binary" if binary else "text"
        raise UserError(f"cannot read {path} as a word2vec {kind} file: {exc}") from None
    fingerprint = f"word2vec:file={_quick_file_digest(path)}"
    return Word2VecEncoder(vectors, source=path, fingerprint=fingerprint)


def load_saved_word2vec(directory: Path, config: dict) -> Word2VecEncoder:
    """The encoder that ``Word2VecEncoder.save(directory)`` described in ``config``."""
    if config.get("weights"):
        encoder = load_word2vec(config["weights"])
    else:
        from gensim.models import KeyedVectors

        path = files.inside(
            directory, str(config.get("vectors", VECTORS_FILE)), f"{directory / TEXT_CONFIG_FILE} (vectors)"
        )
        if not path.exists():
            raise UserError(f"saved word2vec vectors missing: {path}")
        try:
            vectors = KeyedVectors.load_word2vec_format(str(path), binary=True)
        except Exception as exc:  # its message may quote the file: only the error's type
            raise UserError(
                f"cannot read saved word2vec vectors {path}: not a binary word2vec file "
                f"({type(exc).__name__})"
            ) from None
        encoder = Word2VecEncoder(vectors)
    return encoder


def train_word2vec(sentences: list[str], dim: int = 300, seed: int = 0, epochs: int = 10) -> Word2VecEncoder:
    """Word2vec trained on ``sentences`` (tokenised with ``tokenize``), deterministic for a seed."""
    from gensim.models import Word2Vec

    corpus = [t for t in (tokenize(s) for s in sentences) if t]
    if not corpus:
        raise UserError("cannot train word2vec: the captions hold no words")
    model = Word2Vec(
        sentences=corpus,
        vector_size=int(dim),
        window=5,
        min_count=1,
        sg=0,
        seed=int(seed),
        workers=1,
        epochs=int(epochs),
        hashfxn=_stable_hash,
    )
    return Word2VecEncoder(model.wv)
