import numpy as np
import pytest
import torch

from stg_cli.backbones import load_text, load_text_from, load_visual
from stg_cli.backbones.s3d import S3DNet, S3DTextModule, same_max_pool
from stg_cli.errors import UserError

# A few parameters of the released s3d_howto100m.pth, names and shapes as published with it.
RELEASED = {
    "conv1.conv1.weight": (64, 24, 2, 4, 4),
    "conv1.bn1.running_var": (64,),
    "conv_2b.conv1.weight": (64, 64, 1, 1, 1),
    "conv_2c.conv1.weight": (192, 64, 1, 3, 3),
    "conv_2c.conv2.weight": (192, 192, 3, 1, 1),
    "conv_2c.bn2.bias": (192,),
    "gating.fc.weight": (192, 192),
    "mixed_3b.conv_b0.conv1.weight": (64, 192, 1, 1, 1),
    "mixed_3b.conv_b1_b.conv2.weight": (128, 128, 3, 1, 1),
    "mixed_4f.conv_b3_b.conv1.weight": (128, 528, 1, 1, 1),
    "mixed_5c.conv_b0.conv1.weight": (384, 832, 1, 1, 1),
    "mixed_5c.conv_b2_b.conv1.weight": (128, 48, 1, 3, 3),
    "mixed_5c.gating_b3.fc.weight": (128, 128),
    "fc.weight": (512, 1024),
    "text_module.word_embd.weight": (66250, 300),
    "text_module.fc1.weight": (2048, 300),
    "text_module.fc2.weight": (512, 2048),
}
WORDS = ["crack", "the", "egg", "whisk", "pour", "milk", "into", "bowl", "pan"]


def _random_release(num_embeddings: int = 20) -> dict[str, torch.Tensor]:
    """A randomly initialised model with random BatchNorm statistics, in the release's naming."""
    torch.manual_seed(0)
    net, text = S3DNet(), S3DTextModule(num_embeddings=num_embeddings)
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for name, p in net.named_parameters():
            if ".bn" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    state = dict(net.state_dict())
    state.update({f"text_module.{k}": v for k, v in text.state_dict().items()})
    return state


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3d")
    state = _random_release()
    torch.save(state, root / "s3d_howto100m.pth")
    np.save(root / "s3d_dict.npy", np.array(WORDS))
    return root, state


def test_parameter_names_match_the_release():
    state = _random_release(num_embeddings=66250)
    for key, shape in RELEASED.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("text_module.") for k in S3DNet().state_dict())


def test_same_max_pool_matches_tensorflow_padding():
    x = torch.rand(1, 1, 1, 5, 5)
    out = same_max_pool(x, (1, 3, 3), (1, 2, 2))
    assert out.shape == (1, 1, 1, 3, 3)  # ceil(5 / 2)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))
    assert out[0, 0, 0, 2, 2] == padded[0, 0, 0, 4:6, 4:6].max()


def test_visual_round_trip_identical_and_shapes(release):
    root, state = release
    backbone = load_visual("s3d-milnce", root / "s3d_howto100m.pth")
    spec = backbone.spec
    assert spec.grid == (7, 7) and spec.dim == 1024 and spec.input_size == (224, 224)
    assert spec.clip_len == 16 and spec.clip_fps == 10.0 and spec.fps == 1.0
    reference = S3DNet()
    reference.load_state_dict({k: v for k, v in state.items() if not k.startswith("text_module.")})
    reference.eval()
    x = torch.rand(1, 3, 8, 64, 96)  # any even size works; 224×224 gives the 7×7 grid
    with torch.no_grad():
        mixed = reference(x)
    assert mixed.shape == (1, 1024, 1, 2, 3)
    glob, grid = backbone.features(x)
    torch.testing.assert_close(grid, mixed.mean(2).flatten(2).transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(glob, mixed.mean(dim=(2, 3, 4)), rtol=1e-6, atol=1e-6)
    assert load_visual("s3d-milnce", root).fingerprint == backbone.fingerprint


@pytest.mark.slow
def test_visual_full_size_clip(release):
    root, _ = release
    backbone = load_visual("s3d-milnce", root)
    frames = torch.randint(0, 256, (1, 16, 224, 224, 3), dtype=torch.uint8)
    glob, grid = backbone.encode(frames)
    assert glob.shape == (1, 1024) and grid.shape == (1, 49, 1024)
    assert torch.isfinite(grid).all()


def test_text_round_trip(release, tmp_path):
    root, state = release
    enc = load_text("s3d-milnce", root / "s3d_howto100m.pth")
    assert enc.dim == 512
    feats = enc.encode(["Crack the egg, um, into the bowl!", "zzz unknown", "pour milk"])
    assert feats.tokens == [["crack", "the", "egg", "into", "the", "bowl"], [], ["pour", "milk"]]
    assert feats.words.shape == (3, 6, 512) and feats.mask.sum(1).tolist() == [6, 0, 2]
    module = S3DTextModule(num_embeddings=20)
    module.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("text_module.")})
    ids = torch.zeros(3, 16, dtype=torch.long)
    ids[0, :6] = torch.tensor([1, 2, 3, 7, 2, 8])
    ids[2, :2] = torch.tensor([5, 6])
    with torch.no_grad():
        hidden = torch.relu(module.fc1(module.word_embd(ids)))
        expected = module.fc2(hidden.max(1).values)
        per_word = module.fc2(hidden)
    torch.testing.assert_close(feats.sentence, expected)
    torch.testing.assert_close(feats.words[0], per_word[0, :6])
    torch.testing.assert_close(feats.words[2, :2], per_word[2, :2])
    assert (feats.words[2, 2:] == 0).all()
    assert enc.encode([]).sentence.shape == (0, 512)
    enc.save(tmp_path)
    again = load_text_from(tmp_path)
    assert again.name == "s3d-milnce" and again.fingerprint == enc.fingerprint
    torch.testing.assert_close(again.encode(["pour milk"]).sentence, feats.sentence[2:])


def test_errors(release, tmp_path):
    root, state = release
    with pytest.raises(UserError, match="needs local weights"):
        load_visual("s3d-milnce")
    with pytest.raises(UserError, match="not found"):
        load_visual("s3d-milnce", tmp_path)
    (tmp_path / "s3d_howto100m.pth").write_bytes(b"nope")
    with pytest.raises(UserError, match="unreadable S3D weights"):
        load_visual("s3d-milnce", tmp_path)
    partial = {k: v for k, v in state.items() if not k.startswith("mixed_5c.")}
    torch.save(partial, tmp_path / "s3d_howto100m.pth")
    with pytest.raises(UserError, match="weights missing"):
        load_visual("s3d-milnce", tmp_path)
    with pytest.raises(UserError, match="dictionary not found"):
        load_text("s3d-milnce", tmp_path)
    torch.save(state, tmp_path / "s3d_howto100m.pth")
    np.save(tmp_path / "s3d_dict.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="plain numpy string array"):
        load_text("s3d-milnce", tmp_path)
    np.save(tmp_path / "s3d_dict.npy", np.array([f"w{i}" for i in range(30)]))
    with pytest.raises(UserError, match="only 19 embeddings"):
        load_text("s3d-milnce", tmp_path)
