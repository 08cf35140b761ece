"""``s3d-milnce``: the S3D-G video network and text module of MIL-NCE (HowTo100M), in plain torch.

Weights: the released ``s3d_howto100m.pth`` (a state dict; read with ``weights_only=True``) and
its word list ``s3d_dict.npy`` (a numpy string array; word i has token id i + 1, 0 is padding).
Parameter names follow the released state dict (``conv1.conv1.weight``, ``mixed_5c.conv_b1_b.conv2
.weight``, ``gating.fc.weight``, ``fc.weight``, ``text_module.word_embd.weight``, ...), so the file
loads as it is.

Visual (``load_visual("s3d-milnce", path)``):

- one feature step = a clip of 16 RGB frames sampled at 10 fps, squashed to 224×224, values in
  [0, 1] (MIL-NCE uses no mean/std normalisation); steps are 1 s apart (fps 1.0);
- the network: space-to-depth (2×2×2 → 24 channels), S3D-G with self-gating, TensorFlow "SAME"
  max-pool padding, up to Mixed_5c: [B, 1024, T/8, 7, 7] for T input frames at 224×224;
- grid tokens = Mixed_5c averaged over time → [B, 49, 1024]; the global token = Mixed_5c averaged
  over time and space (the ``mixed_5c`` output of the released model), 1024-d. The 512-d joint
  embedding layer ``fc`` is loaded but not used for features.

Text (``load_text("s3d-milnce", path)``): tokens from ``tokenize`` that are in the dictionary.

- ``sentence``: the released text module: the first 16 known words, zero-padded to 16 ids,
  word embedding (300) → ReLU(fc1) (2048) → max over the 16 positions → fc2 → 512-d; exactly the
  model's ``text_embedding`` (padding positions take part in the max, as in the release);
- ``words``: each known word alone through fc2(ReLU(fc1(embedding))) → 512-d, the same space as the
  sentence (the sentence is fc2 of the element-wise max of the words' fc1 activations).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stg_cli.backbones.base import (
    TextEncoder,
    TextFeatures,
    VisualBackbone,
    VisualSpec,
    file_digest,
    pad_token_features,
)
from stg_cli.errors import UserError
from stg_cli.text.normalize import tokenize

S3D_INPUT = (224, 224)
S3D_CLIP_LEN = 16
S3D_CLIP_FPS = 10.0
S3D_SENTENCE_WORDS = 16
WEIGHTS_NAME = "s3d_howto100m.pth"
DICT_NAME = "s3d_dict.npy"
# Inception blocks: (name, input channels, b0, b1a, b1b, b2a, b2b, b3)
INCEPTION = (
    ("mixed_3b", 192, 64, 96, 128, 16, 32, 32),
    ("mixed_3c", 256, 128, 128, 192, 32, 96, 64),
    ("mixed_4b", 480, 192, 96, 208, 16, 48, 64),
    ("mixed_4c", 512, 160, 112, 224, 24, 64, 64),
    ("mixed_4d", 512, 128, 128, 256, 24, 64, 64),
    ("mixed_4e", 512, 112, 144, 288, 32, 64, 64),
    ("mixed_4f", 528, 256, 160, 320, 32, 128, 128),
    ("mixed_5b", 832, 256, 160, 320, 32, 128, 128),
    ("mixed_5c", 832, 384, 192, 384, 48, 128, 128),
)


class Unit3d(nn.Module):
    """Conv3d + BatchNorm + ReLU; separable units add a temporal k×1×1 conv + BN + ReLU after a 1×k×k one."""

    def __init__(
        self, cin: int, cout: int, kernel: tuple[int, int, int], padding=(0, 0, 0), separable: bool = False
    ) -> None:
        super().__init__()
        self.separable = separable
        if separable:
            kt, kh, kw = kernel
            pt, ph, pw = padding
            self.conv1 = nn.Conv3d(cin, cout, (1, kh, kw), padding=(0, ph, pw), bias=False)
            self.bn1 = nn.BatchNorm3d(cout)
            self.conv2 = nn.Conv3d(cout, cout, (kt, 1, 1), padding=(pt, 0, 0), bias=False)
            self.bn2 = nn.BatchNorm3d(cout)
        else:
            self.conv1 = nn.Conv3d(cin, cout, kernel, padding=padding, bias=False)
            self.bn1 = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if self.separable:
            x = F.relu(self.bn2(self.conv2(x)))
        return x


class Gate(nn.Module):
    """S3D-G self-gating: channels scaled by sigmoid(fc(spatio-temporal mean))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * weights[:, :, None, None, None]


class Inception(nn.Module):
    """Four gated branches: 1×1×1; 1×1×1 → sep 3×3×3; 1×1×1 → sep 3×3×3; max-pool → 1×1×1."""

    def __init__(self, cin: int, b0: int, b1a: int, b1b: int, b2a: int, b2b: int, b3: int) -> None:
        super().__init__()
        self.conv_b0 = Unit3d(cin, b0, (1, 1, 1))
        self.conv_b1_a = Unit3d(cin, b1a, (1, 1, 1))
        self.conv_b1_b = Unit3d(b1a, b1b, (3, 3, 3), padding=(1, 1, 1), separable=True)
        self.conv_b2_a = Unit3d(cin, b2a, (1, 1, 1))
        self.conv_b2_b = Unit3d(b2a, b2b, (3, 3, 3), padding=(1, 1, 1), separable=True)
        self.conv_b3_b = Unit3d(cin, b3, (1, 1, 1))
        self.gating_b0, self.gating_b1 = Gate(b0), Gate(b1b)
        self.gating_b2, self.gating_b3 = Gate(b2b), Gate(b3)

    def forward(self, x: Tensor) -> Tensor:
        b0 = self.gating_b0(self.conv_b0(x))
        b1 = self.gating_b1(self.conv_b1_b(self.conv_b1_a(x)))
        b2 = self.gating_b2(self.conv_b2_b(self.conv_b2_a(x)))
        b3 = self.gating_b3(self.conv_b3_b(F.max_pool3d(x, 3, stride=1, padding=1)))
        return torch.cat([b0, b1, b2, b3], dim=1)


def same_max_pool(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """TensorFlow 'SAME' max-pooling: pad max(k - s, 0) (the extra one at the end) with zeros, ceil mode.

    Zero padding equals -inf padding here because the input is post-ReLU (non-negative).
    """
    pads: list[int] = []
    for k, s in zip(reversed(kernel), reversed(stride)):  # F.pad wants the last dim first
        total = max(k - s, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool3d(F.pad(x, pads), kernel, stride, ceil_mode=True)


class S3DNet(nn.Module):
    """S3D-G with space-to-depth, to Mixed_5c (parameter names as in the MIL-NCE release)."""

    def __init__(self, embed_dim: int = 512) -> None:
        super().__init__()
        self.conv1 = Unit3d(24, 64, (2, 4, 4), padding=(1, 2, 2))
        self.conv_2b = Unit3d(64, 64, (1, 1, 1))
        self.conv_2c = Unit3d(64, 192, (3, 3, 3), padding=(1, 1, 1), separable=True)
        self.gating = Gate(192)
        for name, *channels in INCEPTION:
            setattr(self, name, Inception(*channels))
        self.fc = nn.Linear(1024, embed_dim)

    @staticmethod
    def space_to_depth(x: Tensor) -> Tensor:
        """[B, C, T, H, W] → [B, 8C, T/2, H/2, W/2] (the release's channel order: dt, dh, dw, c)."""
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
        return x.reshape(b, 8 * c, t // 2, h // 2, w // 2)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, 3, T, H, W] in [0, 1] (T, H, W even) → Mixed_5c [B, 1024, T/8, H/32, W/32]."""
        x = self.conv1(self.space_to_depth(x))[:, :, 1:, 1:, 1:]  # TF 'SAME' for the 2×4×4 conv
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.gating(self.conv_2c(self.conv_2b(x)))
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.mixed_3c(self.mixed_3b(x))
        x = same_max_pool(x, (3, 3, 3), (2, 2, 2))
        for name in ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"):
            x = getattr(self, name)(x)
        x = same_max_pool(x, (2, 2, 2), (2, 2, 2))
        return self.mixed_5c(self.mixed_5b(x))


class S3DTextModule(nn.Module):
    """Word embedding → ReLU(fc1) → max over words → fc2 (names as ``text_module.*`` of the release)."""

    def __init__(
        self, num_embeddings: int = 66250, word_dim: int = 300, hidden: int = 2048, embed_dim: int = 512
    ) -> None:
        super().__init__()
        self.word_embd = nn.Embedding(num_embeddings, word_dim)
        self.fc1 = nn.Linear(word_dim, hidden)
        self.fc2 = nn.Linear(hidden, embed_dim)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """``ids`` [C, L] → (sentence [C, D] = fc2(max_l ReLU(fc1)), per-id [C, L, D] = fc2(ReLU(fc1)))."""
        hidden = F.relu(self.fc1(self.word_embd(ids)))
        return self.fc2(hidden.max(dim=1).values), self.fc2(hidden)


# ---------------------------------------------------------------------------------------------
# Loading


def _resolve(weights: Path | str | None) -> Path:
    if weights is None:
        raise UserError(f"s3d-milnce needs local weights: pass --weights with {WEIGHTS_NAME}")
    path = Path(weights).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.exists():
        raise UserError(f"S3D weights not found: {path} (expected MIL-NCE's {WEIGHTS_NAME})")
    return path


def read_s3d_state(path: Path) -> dict[str, Tensor]:
    """The released state dict (``module.`` prefixes from DataParallel dropped), as float32."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"unreadable S3D weights {path}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _load_part(module: nn.Module, state: dict[str, Tensor], prefix: str, path: Path) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if prefix + k not in state]
    if missing:
        raise UserError(
            f"{path} is not an S3D MIL-NCE state dict: {len(missing)} weights missing "
            f"(first: {prefix + missing[0]})"
        )
    for key, value in expected.items():
        got = state[prefix + key]
        if tuple(got.shape) != tuple(value.shape):
            raise UserError(
                f"{path}: S3D weight {prefix + key} has shape {tuple(got.shape)}, "
                f"expected {tuple(value.shape)}"
            )
    module.load_state_dict({k: state[prefix + k] for k in expected})


class S3DVisual(VisualBackbone):
    """S3D Mixed_5c: uint8 clips [U, 16, 224, 224, 3] → global [U, 1024], grid [U, 49, 1024]."""

    def __init__(self, net: S3DNet, fingerprint: str) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.spec = VisualSpec(
            name="s3d-milnce",
            grid=(7, 7),
            dim=1024,
            fps=1.0,
            input_size=S3D_INPUT,
            clip_len=S3D_CLIP_LEN,
            clip_fps=S3D_CLIP_FPS,
        )
        self.fingerprint = fingerprint

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` [B, 3, T, H, W] in [0, 1] → (global [B, 1024], grid [B, (H/32)·(W/32), 1024])."""
        mixed = self.net(x).mean(dim=2)  # [B, 1024, h, w]
        grid = mixed.flatten(2).transpose(1, 2)
        return mixed.mean(dim=(2, 3)), grid.contiguous()


def load_s3d_visual(weights: Path | str | None) -> S3DVisual:
    """S3D from ``s3d_howto100m.pth`` (or a folder holding it)."""
    path = _resolve(weights)
    state = read_s3d_state(path)
    embed = state["fc.weight"].shape[0] if "fc.weight" in state else 512
    net = S3DNet(embed_dim=int(embed))
    _load_part(net, state, "", path)
    return S3DVisual(net, f"s3d-milnce:{file_digest(path)}")


def read_dictionary(path: Path) -> list[str]:
    """MIL-NCE's word list (a numpy string array; pickled object arrays are refused)."""
    try:
        words = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise UserError(f"{path} is not a plain numpy string array: {exc}") from None
    except OSError as exc:
        raise UserError(f"unreadable S3D dictionary {path}: {exc}") from None
    if words.ndim != 1 or words.dtype.kind not in "US":
        raise UserError(f"{path} is not a 1-D array of words (dtype {words.dtype}, shape {words.shape})")
    return [w.decode() if isinstance(w, bytes) else str(w) for w in words.tolist()]


class S3DText(TextEncoder):
    """MIL-NCE text module over the dictionary's words."""

    name = "s3d-milnce"

    def __init__(
        self,
        module: S3DTextModule,
        words: list[str],
        weights: Path,
        fingerprint: str,
        device: torch.device | str = "cpu",
    ) -> None:
        self.module = module.eval().requires_grad_(False).to(device)
        self.word_to_id = {w: i + 1 for i, w in enumerate(words)}
        self.weights = weights
        self.dim = module.fc2.out_features
        self.fingerprint = fingerprint

    @torch.no_grad()
    def encode(self, sentences: list[str]) -> TextFeatures:
        device = self.module.fc2.weight.device
        known = [[t for t in tokenize(s) if t in self.word_to_id] for s in sentences]
        ids = torch.zeros(len(sentences), S3D_SENTENCE_WORDS, dtype=torch.long)
        for i, tokens in enumerate(known):
            row = [self.word_to_id[t] for t in tokens[:S3D_SENTENCE_WORDS]]
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        sentence, _ = self.module(ids.to(device)) if sentences else (torch.zeros(0, self.dim), None)
        tokens = [t[: self.max_words] for t in known]
        rows = []
        for row_tokens in tokens:
            if row_tokens:
                word_ids = torch.tensor([[self.word_to_id[t] for t in row_tokens]], device=device)
                rows.append(self.module(word_ids)[1][0].float().cpu())
            else:
                rows.append(torch.zeros(0, self.dim))
        words, mask = pad_token_features(rows, self.dim, tokens)
        return TextFeatures(sentence=sentence.float().cpu(), words=words, mask=mask, tokens=tokens)

    def _save_payload(self, directory: Path) -> dict:
        return {"weights": str(self.weights.resolve())}


def _dictionary_path(weights_path: Path) -> Path:
    candidates = [weights_path.parent / DICT_NAME] + sorted(weights_path.parent.glob("*dict*.npy"))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise UserError(f"S3D dictionary not found: put {DICT_NAME} beside {weights_path}")


def load_s3d_text(weights: Path | str | None, device: torch.device | str = "cpu") -> S3DText:
    """The MIL-NCE text module from the ``.pth`` and the ``s3d_dict.npy`` beside it."""
    path = _resolve(weights)
    dict_path = _dictionary_path(path)
    state = read_s3d_state(path)
    if "text_module.word_embd.weight" not in state or "text_module.fc2.weight" not in state:
        raise UserError(f"{path} holds no MIL-NCE text module (text_module.* weights)")
    num, word_dim = state["text_module.word_embd.weight"].shape
    hidden, _ = state["text_module.fc1.weight"].shape
    embed, _ = state["text_module.fc2.weight"].shape
    module = S3DTextModule(int(num), int(word_dim), int(hidden), int(embed))
    _load_part(module, state, "text_module.", path)
    words = read_dictionary(dict_path)
    if len(words) >= num:
        raise UserError(f"{dict_path} has {len(words)} words but the text module only {num - 1} embeddings")
    fingerprint = f"s3d-milnce:{file_digest(path)}:{file_digest(dict_path)}"
    weights_arg = Path(weights).expanduser()
    return S3DText(module, words, weights_arg, fingerprint, device=device)
