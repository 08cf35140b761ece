"""What every backbone declares and returns: visual specs, text features, fingerprints.

A visual backbone turns uint8 frames into one global token and a grid of local tokens per feature
step; a text encoder turns sentences into one sentence vector and per-token vectors with a mask.
Both carry a ``fingerprint``: a short string that changes whenever the features would change (the
architecture, the seed, the weights), so that a feature store never mixes features of two models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from stg_cli import files
from stg_cli.errors import UserError

DEFAULT_MAX_WORDS = 32
TEXT_CONFIG_FILE = "text_encoder.json"


@dataclass(frozen=True)
class VisualSpec:
    """What a visual backbone consumes and produces.

    Frames are squashed (resized without cropping) to ``input_size`` = (height, width), so grid
    cell (i, j) covers rows ``[i·H/gh, (i+1)·H/gh)`` and columns ``[j·W/gw, (j+1)·W/gw)`` of the
    original frame whatever its aspect ratio. One feature step consumes ``clip_len`` frames taken at
    ``clip_fps``; steps are ``1/fps`` seconds apart.
    """

    name: str
    grid: tuple[int, int]
    dim: int
    fps: float
    input_size: tuple[int, int]
    clip_len: int
    clip_fps: float

    @property
    def num_cells(self) -> int:
        return self.grid[0] * self.grid[1]


class VisualBackbone(torch.nn.Module):
    """A frozen visual feature extractor.

    Subclasses set ``spec`` and ``fingerprint`` and implement ``features(x)`` on float input
    ``[B, 3, H, W]`` (image models, ``clip_len == 1``) or ``[B, 3, T, H, W]`` (video models) already
    scaled to [0, 1], returning ``(global [B, Dv], grid [B, N, Dv])``; N = gh·gw in row-major order.
    """

    spec: VisualSpec
    fingerprint: str

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    @torch.no_grad()
    def encode(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Features of ``frames`` uint8 ``[U, clip_len, H, W, 3]`` (RGB).

        ``frames`` may be a tensor or a numpy array (as decoded). Frames of another size than
        ``spec.input_size`` are resized (bilinear, antialiased) first. Runs under ``no_grad``
        (not ``inference_mode``, so the outputs are ordinary tensors that later autograd code may
        take as inputs). Returns ``(global [U, Dv], grid [U, N, Dv])`` float32 on the CPU.
        """
        frames = torch.as_tensor(frames)
        if frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [U, clip_len, H, W, 3]; got {tuple(frames.shape)}")
        if frames.shape[1] != self.spec.clip_len:
            raise ValueError(
                f"{self.spec.name} takes clips of {self.spec.clip_len} frames; got {frames.shape[1]}"
            )
        u, t, h, w, _ = frames.shape
        if u == 0:
            n, d = self.spec.num_cells, self.spec.dim
            return torch.zeros(0, d), torch.zeros(0, n, d)
        x = frames.to(self.device).reshape(u * t, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
        if (h, w) != tuple(self.spec.input_size):
            x = F.interpolate(
                x, size=self.spec.input_size, mode="bilinear", antialias=True, align_corners=False
            ).clamp_(0.0, 1.0)
        if self.spec.clip_len > 1:
            hh, ww = self.spec.input_size
            x = x.reshape(u, t, 3, hh, ww).permute(0, 2, 1, 3, 4)
        global_feats, grid = self.features(x)
        return global_feats.float().cpu(), grid.float().cpu()


@dataclass(frozen=True)
class TextFeatures:
    """Sentence and per-token features of C sentences.

    ``sentence`` [C, Dw]; ``words`` [C, K, Dw] zero-padded, K = the most tokens of any sentence in
    the call (at most the encoder's ``max_words``, at least 1); ``mask`` [C, K] True for real
    tokens; ``tokens`` the token strings behind the unmasked rows.
    """

    sentence: Tensor
    words: Tensor
    mask: Tensor
    tokens: list[list[str]]


class TextEncoder:
    """A frozen sentence/word encoder; subclasses implement ``encode`` and ``_save_payload``."""

    name: str
    dim: int
    fingerprint: str
    max_words: int = DEFAULT_MAX_WORDS

    def encode(self, sentences: list[str]) -> TextFeatures:  # pragma: no cover - abstract
        raise NotImplementedError

    def _save_payload(self, directory: Path) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        """Write everything needed to reload this encoder with ``load_text_from(directory)``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"name": self.name, "dim": self.dim, "fingerprint": self.fingerprint}
        payload["max_words"] = self.max_words
        payload.update(self._save_payload(directory))
        files.write_json(directory / TEXT_CONFIG_FILE, payload)


def pad_token_features(rows: list[Tensor], dim: int, tokens: list[list[str]]) -> tuple[Tensor, Tensor]:
    """Stack per-sentence token features ``[k_i, Dw]`` into ``words [C, K, Dw]`` and ``mask [C, K]``.

    K = max(k_i, 1), so a batch whose sentences have no token at all still has one (masked) column.
    """
    k = max([r.shape[0] for r in rows] + [1])
    words = torch.zeros(len(rows), k, dim, dtype=torch.float32)
    mask = torch.zeros(len(rows), k, dtype=torch.bool)
    for i, r in enumerate(rows):
        words[i, : r.shape[0]] = r.float()
        mask[i, : r.shape[0]] = True
    assert [len(t) for t in tokens] == mask.sum(1).tolist()
    return words, mask


def state_dict_digest(module: torch.nn.Module, extra: str = "") -> str:
    """A 16-hex-digit digest of a module's parameter names, shapes and values (plus ``extra``)."""
    h = hashlib.sha256(extra.encode())
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def file_digest(path: Path, extra: str = "") -> str:
    """A 16-hex-digit sha256 digest of a file's bytes (plus ``extra``)."""
    h = hashlib.sha256(extra.encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def require_path(weights: Path | None, name: str, what: str) -> Path:
    """``weights`` as an existing Path, else a UserError that says what the backbone needs."""
    if weights is None:
        raise UserError(f"{name} needs local weights: pass --weights with {what}")
    path = Path(weights).expanduser()
    if not path.exists():
        raise UserError(f"{name} weights not found: {path} (expected {what})")
    return path
