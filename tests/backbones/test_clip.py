"""CLIP towers against transformers' CLIPModel on the same random weights, in both file layouts."""

import collections
import gzip
import json
from pathlib import Path

import pytest
import torch

from stg_cli.backbones import load_text, load_text_from, load_visual
from stg_cli.backbones.clip import CLIP_MEAN, CLIP_STD, CLIPVisual, TowerConfig, VisionTower
from stg_cli.backbones.clip_tokenizer import WORD_END, byte_symbols, openai_vocab
from stg_cli.errors import UserError

transformers = pytest.importorskip("transformers")

CORPUS = (
    "crack the egg into the bowl whisk the eggs pour the milk into the pan cut the onion "
    "add salt and pepper stir the sauce slice the tomato 2 cups of flour don't burn it"
).split()
SENTENCES = [
    "Crack the egg into the bowl!",
    "whisk, um, the EGGS",
    "add 2 cups of flour",
    "don't burn the zucchini",
    "",
]


def learn_merges(words: list[str], count: int) -> list[tuple[str, str]]:
    """A small BPE merge list learnt greedily on ``words`` (for a test vocabulary)."""
    symbols = byte_symbols()
    seqs = [[symbols[b] for b in w.encode()] for w in words]
    seqs = [s[:-1] + [s[-1] + WORD_END] for s in seqs]
    merges = []
    for _ in range(count):
        pairs = collections.Counter((s[i], s[i + 1]) for s in seqs for i in range(len(s) - 1))
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        merges.append((a, b))
        new = []
        for s in seqs:
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            new.append(out)
        seqs = new
    return merges


def to_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The OpenAI layout of a Hugging Face CLIPModel state dict (written independently here)."""
    out = {}
    for tower, prefix, dst in (("vision_model", "visual.", "visual."), ("text_model", "", "")):
        i = 0
        while f"{tower}.encoder.layers.{i}.layer_norm1.weight" in state:
            src = f"{tower}.encoder.layers.{i}."
            res = f"{dst}transformer.resblocks.{i}."
            for kind in ("weight", "bias"):
                out[res + f"attn.in_proj_{kind}"] = torch.cat(
                    [state[src + f"self_attn.{p}_proj.{kind}"] for p in "qkv"]
                )
                out[res + f"attn.out_proj.{kind}"] = state[src + f"self_attn.out_proj.{kind}"]
                out[res + f"ln_1.{kind}"] = state[src + f"layer_norm1.{kind}"]
                out[res + f"ln_2.{kind}"] = state[src + f"layer_norm2.{kind}"]
                out[res + f"mlp.c_fc.{kind}"] = state[src + f"mlp.fc1.{kind}"]
                out[res + f"mlp.c_proj.{kind}"] = state[src + f"mlp.fc2.{kind}"]
            i += 1
    v, t = "vision_model.", "text_model."
    out["visual.conv1.weight"] = state[v + "embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = state[v + "embeddings.class_embedding"]
    out["visual.positional_embedding"] = state[v + "embeddings.position_embedding.weight"]
    for kind in ("weight", "bias"):
        out[f"visual.ln_pre.{kind}"] = state[v + f"pre_layrnorm.{kind}"]
        out[f"visual.ln_post.{kind}"] = state[v + f"post_layernorm.{kind}"]
        out[f"ln_final.{kind}"] = state[t + f"final_layer_norm.{kind}"]
    out["visual.proj"] = state["visual_projection.weight"].t().contiguous()
    out["token_embedding.weight"] = state[t + "embeddings.token_embedding.weight"]
    out["positional_embedding"] = state[t + "embeddings.position_embedding.weight"]
    out["text_projection"] = state["text_projection.weight"].t().contiguous()
    out["logit_scale"] = state["logit_scale"]
    return {k: v.half() for k, v in out.items()}  # OpenAI ships fp16 weights


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("clip")
    merges = learn_merges(CORPUS, 60)
    vocab = openai_vocab(merges)
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftext|>"]
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=16,
            eos_token_id=eot,
            bos_token_id=sot,
            pad_token_id=eot,
        ),
        vision_config=dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=16,
        ),
        projection_dim=48,
    )
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # LayerNorms start at 1/0: perturb so swaps would show
            p.add_(0.05 * torch.randn_like(p))
    hf = root / "hf"
    model.save_pretrained(hf)
    (hf / "vocab.json").write_text(json.dumps(vocab))
    (hf / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges))
    openai = root / "openai"
    openai.mkdir()
    torch.save(to_openai(model.state_dict()), openai / "ViT-B-32.pt")
    with gzip.open(openai / "bpe_simple_vocab_16e6.txt.gz", "wt") as f:
        f.write('"bpe_simple_vocab_16e6.txt#version: 0.2\n' + "\n".join(f"{a} {b}" for a, b in merges))
    return hf, openai, model


def _frames(n: int, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 1, size, size, 3), generator=g, dtype=torch.uint8)


def _reference_image(model, frames: torch.Tensor) -> torch.Tensor:
    x = frames[:, 0].permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model.vision_model(pixel_values=x)
        tokens = model.visual_projection(model.vision_model.post_layernorm(out.last_hidden_state))
        pooled = model.get_image_features(pixel_values=x)
    pooled = getattr(pooled, "pooler_output", pooled)
    torch.testing.assert_close(tokens[:, 0], pooled, rtol=1e-5, atol=1e-5)
    return tokens


@pytest.mark.parametrize("layout", ["hf", "openai"])
def test_visual_matches_transformers(clip_dirs, layout):
    hf, openai, model = clip_dirs
    backbone = load_visual("clip-vit-b32", hf if layout == "hf" else openai / "ViT-B-32.pt")
    assert backbone.spec.grid == (4, 4) and backbone.spec.dim == 48
    assert backbone.spec.input_size == (64, 64) and backbone.spec.clip_len == 1
    frames = _frames(3)
    glob, grid = backbone.encode(frames)
    expected = _reference_image(model, frames)
    tol = dict(rtol=1e-4, atol=1e-4) if layout == "hf" else dict(rtol=0.02, atol=0.02)  # fp16 file
    torch.testing.assert_close(glob, expected[:, 0], **tol)
    torch.testing.assert_close(grid, expected[:, 1:], **tol)


def test_both_layouts_same_fingerprint_only_for_same_weights(clip_dirs):
    hf, openai, _ = clip_dirs
    a = load_visual("clip-vit-b32", hf)
    b = load_visual("clip-vit-b32", openai)  # a folder holding the .pt
    assert a.fingerprint.startswith("clip-vit-b32:")
    assert a.fingerprint != b.fingerprint  # the OpenAI copy was rounded to fp16
    assert load_visual("clip-vit-b32", hf).fingerprint == a.fingerprint


def test_tokenizer_matches_transformers(clip_dirs):
    hf, openai, _ = clip_dirs
    reference = transformers.CLIPTokenizer(str(hf / "vocab.json"), str(hf / "merges.txt"))
    for layout in (hf, openai / "ViT-B-32.pt"):
        enc = load_text("clip", layout)
        for text in ["crack the egg into the bowl", "add 2 cups of flour", "don't burn zucchini"]:
            ids, pieces = enc.tokenizer.encode(text, 77)
            assert ids == reference(text)["input_ids"], text
            assert "".join(pieces) == text.replace(" ", "")


@pytest.mark.parametrize("layout", ["hf", "openai"])
def test_text_matches_transformers(clip_dirs, layout):
    hf, openai, model = clip_dirs
    enc = load_text("clip", hf if layout == "hf" else openai / "ViT-B-32.pt")
    assert enc.dim == 48
    feats = enc.encode(SENTENCES)
    tol = dict(rtol=1e-4, atol=1e-4) if layout == "hf" else dict(rtol=0.02, atol=0.02)
    assert feats.tokens[1] == ["whi", "sk", "the", "eggs"] or "".join(feats.tokens[1]) == "whisktheeggs"
    assert feats.mask.sum(1).tolist() == [len(t) for t in feats.tokens]
    assert feats.tokens[-1] == [] and not feats.mask[-1].any()
    for i, text in enumerate(SENTENCES):
        ids, _ = enc.tokenizer.encode(text, 16)
        ids_t = torch.tensor([ids])
        with torch.no_grad():
            hidden = model.text_model(input_ids=ids_t).last_hidden_state
            tokens = model.text_projection(hidden)[0]
            pooled = model.get_text_features(input_ids=ids_t)
        pooled = getattr(pooled, "pooler_output", pooled)[0]
        torch.testing.assert_close(tokens[-1], pooled, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(feats.sentence[i], pooled, **tol)
        n = len(ids) - 2
        torch.testing.assert_close(feats.words[i, :n], tokens[1 : 1 + n], **tol)
        assert (feats.words[i, n:] == 0).all()


def test_text_truncates_to_context_and_saves(clip_dirs, tmp_path):
    hf, _, _ = clip_dirs
    enc = load_text("clip", hf)
    feats = enc.encode(["the egg " * 40])
    assert feats.mask.sum().item() == 14  # context 16 minus SOT and EOT
    assert enc.encode([]).words.shape == (0, 1, 48)
    enc.save(tmp_path)
    again = load_text_from(tmp_path)
    assert again.fingerprint == enc.fingerprint
    torch.testing.assert_close(again.encode(SENTENCES).sentence, enc.encode(SENTENCES).sentence)


def test_weight_errors_are_user_errors(clip_dirs, tmp_path):
    hf, openai, _ = clip_dirs
    with pytest.raises(UserError, match="needs local weights"):
        load_visual("clip-vit-b32")
    with pytest.raises(UserError, match="not found"):
        load_visual("clip-vit-b32", tmp_path / "nothing")
    with pytest.raises(UserError, match="no CLIP weights"):
        load_visual("clip-vit-b32", tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="unreadable"):
        load_visual("clip-vit-b32", bad)
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="does not hold CLIP weights"):
        load_visual("clip-vit-b32", tmp_path / "other.pt")
    state = torch.load(openai / "ViT-B-32.pt", weights_only=True)
    del state["visual.ln_post.bias"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(UserError, match="lacks 1 CLIP visual weights"):
        load_visual("clip-vit-b32", tmp_path / "partial.pt")
    with pytest.raises(UserError, match="no CLIP tokenizer"):
        load_text("clip", tmp_path / "partial.pt")


def test_full_size_vit_b32_shapes():
    tower = VisionTower(TowerConfig(768, 12, 12, 3072), patch=32, grid=7, embed_dim=512)
    backbone = CLIPVisual(tower, Path("random"))
    assert backbone.spec.grid == (7, 7) and backbone.spec.dim == 512
    assert backbone.spec.input_size == (224, 224)
    glob, grid = backbone.encode(_frames(2, size=160))  # resized to 224 first
    assert glob.shape == (2, 512) and grid.shape == (2, 49, 512)
    assert torch.isfinite(grid).all()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archives_are_read_through_jit(tmp_path):
    from stg_cli.backbones.clip import _load_state_file

    scripted = torch.jit.script(torch.nn.Linear(3, 2))
    scripted.save(str(tmp_path / "scripted.pt"))
    state = _load_state_file(tmp_path / "scripted.pt")
    assert set(state) == {"weight", "bias"}
    torch.testing.assert_close(state["weight"], scripted.weight)


def test_vision_only_hugging_face_folder(clip_dirs, tmp_path):
    _, _, model = clip_dirs
    config = transformers.CLIPVisionConfig(**model.config.vision_config.to_dict())
    config.projection_dim = model.config.projection_dim
    vision = transformers.CLIPVisionModelWithProjection(config)
    vision.load_state_dict(model.state_dict(), strict=False)
    vision.save_pretrained(tmp_path)
    backbone = load_visual("clip-vit-b32", tmp_path)
    frames = _frames(2)
    torch.testing.assert_close(
        backbone.encode(frames)[1], _reference_image(model, frames)[:, 1:], rtol=1e-4, atol=1e-4
    )
