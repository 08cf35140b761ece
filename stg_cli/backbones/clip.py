"""``clip-vit-b32`` (visual) and ``clip`` (text): OpenAI CLIP ViT-B/32 in plain torch.

Both towers are written here (no torchvision, no transformers) and read weights from either

- a Hugging Face ``CLIPModel`` folder: ``config.json`` + ``model.safetensors`` (or
  ``pytorch_model.bin``), keys ``vision_model.*``, ``visual_projection.weight``, ``text_model.*``,
  ``text_projection.weight``; tokenizer ``vocab.json`` + ``merges.txt``; or
- an OpenAI state dict file (``ViT-B-32.pt``, TorchScript archive or plain state dict): keys
  ``visual.conv1.weight``, ``visual.transformer.resblocks.*``, ``visual.proj``,
  ``transformer.resblocks.*``, ``text_projection``, ...; tokenizer ``bpe_simple_vocab_16e6.txt.gz``
  (or vocab.json + merges.txt) in the same folder.

Sizes (layers, widths, patch, positions, projection) are read off the weight shapes; the number of
attention heads comes from ``config.json`` (Hugging Face) or is width/64 (OpenAI's rule); the
activation is ``quick_gelu`` unless the config says otherwise.

Visual: frames are squashed to 224×224 (no centre crop, so every cell maps back to a fixed part of
the original frame), normalised with CLIP's mean/std. The 7×7 = 49 patch tokens and the CLS token
of the last layer all go through ``ln_post`` and the visual projection, so grid tokens and the
global (CLS) token live in the same 512-d space; the global token is exactly CLIP's image
embedding (unnormalised).

Text: BPE pieces of the normalised sentence, ``[SOT] pieces [EOT]`` in a causal transformer with a
77-token context. ``sentence`` is the EOT token after ``ln_final`` and the text projection (CLIP's
text embedding, unnormalised); ``words`` are the piece tokens (SOT and EOT excluded) through the
same ``ln_final`` + projection, the first ``max_words`` of them.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stg_cli.backbones.base import (
    TextEncoder,
    TextFeatures,
    VisualBackbone,
    VisualSpec,
    pad_token_features,
    state_dict_digest,
)
from stg_cli.backbones.clip_tokenizer import CLIPTokenizer, load_tokenizer
from stg_cli.errors import UserError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHTS_HINT = "a Hugging Face CLIP folder (config.json + model.safetensors) or an OpenAI ViT-B-32.pt"


@dataclass(frozen=True)
class TowerConfig:
    """Shape of one transformer tower."""

    width: int
    layers: int
    heads: int
    mlp: int
    act: str = "quick_gelu"
    eps: float = 1e-5


class Block(nn.Module):
    """Pre-norm transformer block (CLIP's ResidualAttentionBlock)."""

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        w = cfg.width
        self.heads = cfg.heads
        self.act = cfg.act
        self.ln_1 = nn.LayerNorm(w, eps=cfg.eps)
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(w, w), nn.Linear(w, w), nn.Linear(w, w)
        self.out_proj = nn.Linear(w, w)
        self.ln_2 = nn.LayerNorm(w, eps=cfg.eps)
        self.fc1 = nn.Linear(w, cfg.mlp)
        self.fc2 = nn.Linear(cfg.mlp, w)

    def _activation(self, x: Tensor) -> Tensor:
        if self.act == "quick_gelu":
            return x * torch.sigmoid(1.702 * x)
        if self.act == "gelu":
            return F.gelu(x)
        raise UserError(f"unsupported CLIP activation {self.act!r}")

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        """``x`` [B, L, W] → [B, L, W]."""
        b, length, w = x.shape
        h = self.ln_1(x)

        def split(t: Tensor) -> Tensor:
            return t.view(b, length, self.heads, w // self.heads).transpose(1, 2)

        q, k, v = split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.out_proj(attn.transpose(1, 2).reshape(b, length, w))
        return x + self.fc2(self._activation(self.fc1(self.ln_2(x))))


class VisionTower(nn.Module):
    """ViT: patches + CLS → transformer → ln_post → projection, for every token."""

    def __init__(self, cfg: TowerConfig, patch: int, grid: int, embed_dim: int) -> None:
        super().__init__()
        self.patch, self.grid = patch, grid
        self.patch_embed = nn.Conv2d(3, cfg.width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(cfg.width))
        self.position_embedding = nn.Parameter(torch.zeros(grid * grid + 1, cfg.width))
        self.ln_pre = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_post = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, 3, S, S] normalised → [B, 1 + grid², D] (CLS first)."""
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        h = torch.cat([cls, tokens], dim=1) + self.position_embedding.to(tokens.dtype)
        h = self.ln_pre(h)
        for block in self.blocks:
            h = block(h)
        return self.proj(self.ln_post(h))


class TextTower(nn.Module):
    """Causal text transformer → ln_final → projection, for every token."""

    def __init__(self, cfg: TowerConfig, vocab: int, context: int, embed_dim: int) -> None:
        super().__init__()
        self.context = context
        self.token_embedding = nn.Embedding(vocab, cfg.width)
        self.position_embedding = nn.Parameter(torch.zeros(context, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_final = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, ids: Tensor) -> Tensor:
        """``ids`` [B, L ≤ context] → [B, L, D]; a token sees only earlier ones (padding after
        EOT is inert)."""
        h = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        for block in self.blocks:
            h = block(h, causal=True)
        return self.proj(self.ln_final(h))


# ---------------------------------------------------------------------------------------------
# Reading weights


@dataclass
class CLIPWeights:
    """Weights of both towers in this module's naming, with what is needed to build them."""

    visual: dict[str, Tensor]
    text: dict[str, Tensor]
    vision_heads: int
    text_heads: int
    vision_act: str
    text_act: str
    vision_eps: float
    text_eps: float
    folder: Path  # where the tokenizer files are looked for
    source: Path


_HF_LAYER = {
    "self_attn.q_proj": "q_proj",
    "self_attn.k_proj": "k_proj",
    "self_attn.v_proj": "v_proj",
    "self_attn.out_proj": "out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "fc1",
    "mlp.fc2": "fc2",
}
_HF_VISION = {
    "vision_model.embeddings.patch_embedding.weight": "patch_embed.weight",
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.position_embedding.weight": "position_embedding",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
    "visual_projection.weight": "proj.weight",
}
_HF_TEXT = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "position_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "text_projection.weight": "proj.weight",
}
_OPENAI_LAYER = {
    "attn.out_proj": "out_proj",
    "ln_1": "ln_1",
    "ln_2": "ln_2",
    "mlp.c_fc": "fc1",
    "mlp.c_proj": "fc2",
}


def _map_hf(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    visual: dict[str, Tensor] = {}
    text: dict[str, Tensor] = {}
    layer = re.compile(r"(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
    for key, value in state.items():
        if key in _HF_VISION:
            visual[_HF_VISION[key]] = value
        elif key in _HF_TEXT:
            text[_HF_TEXT[key]] = value
        elif (m := layer.match(key)) and m.group(3) in _HF_LAYER:
            target = visual if m.group(1) == "vision_model" else text
            target[f"blocks.{m.group(2)}.{_HF_LAYER[m.group(3)]}.{m.group(4)}"] = value
    return visual, text


def _map_openai(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    visual: dict[str, Tensor] = {}
    text: dict[str, Tensor] = {}
    layer = re.compile(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$")
    in_proj = re.compile(r"(visual\.)?transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")
    direct = {
        "visual.conv1.weight": (visual, "patch_embed.weight"),
        "visual.class_embedding": (visual, "class_embedding"),
        "visual.positional_embedding": (visual, "position_embedding"),
        "visual.ln_pre.weight": (visual, "ln_pre.weight"),
        "visual.ln_pre.bias": (visual, "ln_pre.bias"),
        "visual.ln_post.weight": (visual, "ln_post.weight"),
        "visual.ln_post.bias": (visual, "ln_post.bias"),
        "token_embedding.weight": (text, "token_embedding.weight"),
        "positional_embedding": (text, "position_embedding"),
        "ln_final.weight": (text, "ln_final.weight"),
        "ln_final.bias": (text, "ln_final.bias"),
    }
    for key, value in state.items():
        if key in direct:
            target, name = direct[key]
            target[name] = value
        elif key == "visual.proj":
            visual["proj.weight"] = value.t()
        elif key == "text_projection":
            text["proj.weight"] = value.t()
        elif m := in_proj.match(key):
            target = visual if m.group(1) else text
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                target[f"blocks.{m.group(2)}.{name}.{m.group(3)}"] = part
        elif (m := layer.match(key)) and m.group(3) in _OPENAI_LAYER:
            target = visual if m.group(1) else text
            target[f"blocks.{m.group(2)}.{_OPENAI_LAYER[m.group(3)]}.{m.group(4)}"] = value
    return visual, text


def _load_state_file(path: Path) -> dict[str, Tensor]:
    """A state dict from safetensors, a torch state dict (weights_only) or a TorchScript archive."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise UserError(f"unreadable safetensors file {path}: {exc}") from None
    if _is_torchscript(path):  # OpenAI's released ViT-B-32.pt is a TorchScript archive
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as exc:
            raise UserError(f"unreadable TorchScript weights {path}: {exc}") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"unreadable weights file {path}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_clip_weights(weights: Path | str | None) -> CLIPWeights:
    """Both towers' weights from a Hugging Face CLIP folder or an OpenAI state-dict file."""
    if weights is None:
        raise UserError(f"clip needs local weights: pass --weights with {WEIGHTS_HINT}")
    path = Path(weights).expanduser()
    if not path.exists():
        raise UserError(f"CLIP weights not found: {path} (expected {WEIGHTS_HINT})")
    config: dict = {}
    if path.is_dir():
        files = [path / n for n in HF_WEIGHT_FILES if (path / n).exists()]
        if not files:
            pts = sorted(path.glob("*.pt")) + sorted(path.glob("*.pth"))
            if not pts:
                raise UserError(f"no CLIP weights in {path} (expected {WEIGHTS_HINT})")
            files = pts[:1]
        file, folder = files[0], path
        if (path / "config.json").exists():
            try:
                config = json.loads((path / "config.json").read_text())
            except ValueError as exc:
                raise UserError(f"unreadable {path / 'config.json'}: {exc}") from None
    else:
        file, folder = path, path.parent
    state = {k: v.float() if v.is_floating_point() else v for k, v in _load_state_file(file).items()}
    if "visual.conv1.weight" in state:
        visual, text = _map_openai(state)
        v_width = visual["patch_embed.weight"].shape[0] if "patch_embed.weight" in visual else 64
        t_width = text["ln_final.weight"].shape[0] if "ln_final.weight" in text else 64
        return CLIPWeights(
            visual,
            text,
            max(v_width // 64, 1),
            max(t_width // 64, 1),
            "quick_gelu",
            "quick_gelu",
            1e-5,
            1e-5,
            folder,
            file,
        )
    if (
        "vision_model.embeddings.patch_embedding.weight" in state
        or "text_model.embeddings.token_embedding.weight" in state
    ):
        visual, text = _map_hf(state)
        # a CLIPModel config nests the towers; a single-tower config (CLIPVisionModelWithProjection,
        # CLIPTextModelWithProjection) holds its settings at the top level
        model_type = config.get("model_type")
        vc = config.get("vision_config") or (config if model_type == "clip_vision_model" else {})
        tc = config.get("text_config") or (config if model_type == "clip_text_model" else {})
        return CLIPWeights(
            visual,
            text,
            int(vc.get("num_attention_heads", 12)),
            int(tc.get("num_attention_heads", 8)),
            str(vc.get("hidden_act", "quick_gelu")),
            str(tc.get("hidden_act", "quick_gelu")),
            float(vc.get("layer_norm_eps", 1e-5)),
            float(tc.get("layer_norm_eps", 1e-5)),
            folder,
            file,
        )
    raise UserError(f"{file} does not hold CLIP weights (no visual.conv1 or vision_model keys)")


def _count_layers(state: dict[str, Tensor]) -> int:
    indices = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    return max(indices) + 1 if indices else 0


def _load_into(module: nn.Module, state: dict[str, Tensor], what: str, source: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise UserError(f"{source} lacks {len(missing)} CLIP {what} weights (first: {missing[0]})")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(
                f"{source}: CLIP {what} weight {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)}"
            )
    module.load_state_dict({k: state[k] for k in expected})


def build_vision_tower(w: CLIPWeights) -> VisionTower:
    s = w.visual
    if "patch_embed.weight" not in s or "position_embedding" not in s or "proj.weight" not in s:
        raise UserError(f"{w.source} holds no CLIP visual tower")
    width, _, patch, _ = s["patch_embed.weight"].shape
    grid = math.isqrt(s["position_embedding"].shape[0] - 1)
    if grid * grid + 1 != s["position_embedding"].shape[0]:
        raise UserError(f"{w.source}: visual position embedding is not a square grid + CLS")
    mlp = s["blocks.0.fc1.weight"].shape[0] if "blocks.0.fc1.weight" in s else 4 * width
    if width % w.vision_heads:
        raise UserError(f"{w.source}: width {width} not divisible by {w.vision_heads} heads")
    cfg = TowerConfig(int(width), _count_layers(s), w.vision_heads, int(mlp), w.vision_act, w.vision_eps)
    tower = VisionTower(cfg, int(patch), grid, int(s["proj.weight"].shape[0]))
    _load_into(tower, s, "visual", w.source)
    return tower


def build_text_tower(w: CLIPWeights) -> TextTower:
    s = w.text
    if "token_embedding.weight" not in s or "proj.weight" not in s:
        raise UserError(f"{w.source} holds no CLIP text tower")
    vocab, width = s["token_embedding.weight"].shape
    mlp = s["blocks.0.fc1.weight"].shape[0] if "blocks.0.fc1.weight" in s else 4 * width
    if width % w.text_heads:
        raise UserError(f"{w.source}: width {width} not divisible by {w.text_heads} heads")
    cfg = TowerConfig(int(width), _count_layers(s), w.text_heads, int(mlp), w.text_act, w.text_eps)
    context = int(s["position_embedding"].shape[0])
    tower = TextTower(cfg, int(vocab), context, int(s["proj.weight"].shape[0]))
    _load_into(tower, s, "text", w.source)
    return tower


# ---------------------------------------------------------------------------------------------
# The registry objects


class CLIPVisual(VisualBackbone):
    """CLIP image tower: uint8 frames [U, 1, H, W, 3] → global (CLS) [U, D], grid [U, g², D]."""

    def __init__(self, tower: VisionTower, source: Path) -> None:
        super().__init__()
        self.tower = tower.eval().requires_grad_(False)
        self.source = source
        size = tower.patch * tower.grid
        self.spec = VisualSpec(
            name="clip-vit-b32",
            grid=(tower.grid, tower.grid),
            dim=tower.proj.out_features,
            fps=1.0,
            input_size=(size, size),
            clip_len=1,
            clip_fps=1.0,
        )
        self.fingerprint = f"clip-vit-b32:{state_dict_digest(self.tower, 'squash-224')}"
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` [B, 3, S, S] in [0, 1] → (global [B, D], grid [B, g², D])."""
        out = self.tower((x - self.mean) / self.std)
        return out[:, 0], out[:, 1:]


class CLIPText(TextEncoder):
    """CLIP text tower: BPE pieces + EOT."""

    name = "clip"

    def __init__(
        self, tower: TextTower, tokenizer: CLIPTokenizer, weights: Path, device: torch.device | str
    ) -> None:
        self.tower = tower.eval().requires_grad_(False).to(device)
        self.tokenizer = tokenizer
        self.weights = weights
        self.dim = tower.proj.out_features
        vocab_digest = str(len(tokenizer.vocab)) + ":" + str(len(tokenizer.ranks))
        self.fingerprint = f"clip:{state_dict_digest(self.tower, vocab_digest)}"

    def token_ids(self, sentences: list[str]) -> tuple[Tensor, list[int], list[list[str]]]:
        """Ids [C, L] (padded with 0 after EOT), the EOT position and the piece strings per sentence."""
        encoded = [self.tokenizer.encode(s, self.tower.context) for s in sentences]
        length = max([len(ids) for ids, _ in encoded] + [2])
        ids = torch.zeros(len(sentences), length, dtype=torch.long)
        for i, (row, _) in enumerate(encoded):
            ids[i, : len(row)] = torch.tensor(row)
        return ids, [len(row) - 1 for row, _ in encoded], [p for _, p in encoded]

    @torch.no_grad()
    def encode(self, sentences: list[str]) -> TextFeatures:
        device = self.tower.proj.weight.device
        rows, tokens, sentence_rows = [], [], []
        for start in range(0, len(sentences), 64):
            ids, eot, pieces = self.token_ids(sentences[start : start + 64])
            out = self.tower(ids.to(device)).float().cpu()  # [b, L, D]
            for i, end in enumerate(eot):
                n = min(end - 1, self.max_words)
                rows.append(out[i, 1 : 1 + n])
                tokens.append(pieces[i][:n])
                sentence_rows.append(out[i, end])
        words, mask = pad_token_features(rows, self.dim, tokens)
        sentence = torch.stack(sentence_rows) if sentence_rows else torch.zeros(0, self.dim)
        return TextFeatures(sentence=sentence, words=words, mask=mask, tokens=tokens)

    def _save_payload(self, directory: Path) -> dict:
        return {"weights": str(self.weights.resolve())}


def load_clip_visual(weights: Path | str | None) -> CLIPVisual:
    """The CLIP image tower from a Hugging Face folder or an OpenAI state dict."""
    w = read_clip_weights(weights)
    return CLIPVisual(build_vision_tower(w), w.source)


def load_clip_text(weights: Path | str | None, device: torch.device | str = "cpu") -> CLIPText:
    """The CLIP text tower and its BPE tokenizer from the same weights."""
    w = read_clip_weights(weights)
    tower = build_text_tower(w)
    tokenizer = load_tokenizer(w.folder)
    if max(tokenizer.vocab.values()) >= tower.token_embedding.num_embeddings:
        raise UserError(
            f"CLIP tokenizer in {w.folder} has ids beyond the text model's "
            f"{tower.token_embedding.num_embeddings} token embeddings"
        )
    return CLIPText(tower, tokenizer, Path(weights).expanduser(), device)
