import numpy as np
import pytest
import torch

from stg_cli.backbones import VISUAL_BACKBONES, load_visual
from stg_cli.backbones.tiny import TinyBackbone
from stg_cli.errors import UserError


def _frames(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 112, 112, 3), generator=g, dtype=torch.uint8)


def test_shapes_spec_and_dtype():
    model = load_visual("tiny")
    assert "tiny" in VISUAL_BACKBONES
    spec = model.spec
    assert spec.grid == (7, 7) and spec.dim == 256 and spec.input_size == (112, 112)
    assert spec.clip_len == 1 and spec.fps == 1.0
    glob, grid = model.encode(_frames(3))
    assert glob.shape == (3, 256) and grid.shape == (3, 49, 256)
    assert glob.dtype == grid.dtype == torch.float32
    torch.testing.assert_close(glob, grid.mean(1))
    assert torch.isfinite(grid).all() and grid.std() > 0.1


def test_deterministic_from_seed_not_global_rng():
    frames = _frames(2)
    torch.manual_seed(123)
    a = TinyBackbone(seed=5).encode(frames)
    torch.manual_seed(999)
    torch.rand(10)
    b = TinyBackbone(seed=5).encode(frames)
    c = TinyBackbone(seed=6).encode(frames)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    assert not torch.allclose(a[1], c[1])
    assert TinyBackbone(5).fingerprint == TinyBackbone(5).fingerprint != TinyBackbone(6).fingerprint
    assert load_visual("tiny", "5").fingerprint == TinyBackbone(5).fingerprint


def test_batch_independent_and_resizes_other_sizes():
    model = TinyBackbone()
    frames = _frames(4)
    _, whole = model.encode(frames)
    _, part = model.encode(frames[1:2])
    torch.testing.assert_close(whole[1:2], part, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.encode(frames.numpy())[1], whole)
    big = torch.randint(0, 256, (2, 1, 240, 320, 3), dtype=torch.uint8)
    assert model.encode(big)[1].shape == (2, 49, 256)
    assert model.encode(torch.zeros(0, 1, 112, 112, 3, dtype=torch.uint8))[1].shape == (0, 49, 256)
    with pytest.raises(ValueError):
        model.encode(torch.zeros(2, 112, 112, 3, dtype=torch.uint8))


def test_unknown_backbone_lists_choices():
    with pytest.raises(UserError, match="tiny, clip-vit-b32, s3d-milnce"):
        load_visual("resnet")
    with pytest.raises(UserError, match="seed"):
        load_visual("tiny", "/some/weights.pth")


COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40)]


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 112×112 textured grey frame with 3 coloured shapes in distinct cells; labels [7, 7].

    Label 0 = background, 1 + 2·colour + shape (shape 0 = square, 1 = disc).
    """
    img = rng.integers(90, 140, size=(112, 112, 3)).astype(np.uint8)
    labels = np.zeros((7, 7), dtype=np.int64)
    cells = rng.choice(49, size=3, replace=False)
    yy, xx = np.mgrid[0:16, 0:16]
    disc = (yy - 7.5) ** 2 + (xx - 7.5) ** 2 <= 7.0**2
    for cell in cells:
        colour, shape = rng.integers(len(COLOURS)), rng.integers(2)
        i, j = divmod(int(cell), 7)
        patch = img[i * 16 : (i + 1) * 16, j * 16 : (j + 1) * 16]
        region = np.ones((16, 16), bool) if shape == 0 else disc
        region = region & (np.maximum(abs(yy - 7.5), abs(xx - 7.5)) <= 6.5)
        patch[region] = COLOURS[colour]
        labels[i, j] = 1 + 2 * colour + shape
    return img, labels


def test_linear_probe_tells_which_object_is_in_which_cell():
    """A least-squares linear probe on the grid tokens recovers each cell's colour and shape."""
    rng = np.random.default_rng(0)
    scenes = [_scene(rng) for _ in range(160)]
    frames = torch.from_numpy(np.stack([s[0] for s in scenes]))[:, None]
    labels = torch.from_numpy(np.stack([s[1] for s in scenes])).reshape(-1)
    _, grid = TinyBackbone(0).encode(frames)
    x = grid.reshape(-1, grid.shape[-1]).double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    y = torch.nn.functional.one_hot(labels, 9).double()
    n_train = 120 * 49
    a = x[:n_train]
    w = torch.linalg.solve(a.T @ a + 1e-1 * torch.eye(a.shape[1], dtype=a.dtype), a.T @ y[:n_train])
    pred = (x[n_train:] @ w).argmax(1)
    truth = labels[n_train:]
    objects = truth > 0
    assert (pred[objects] == truth[objects]).float().mean() > 0.9
    assert (pred[~objects] == 0).float().mean() > 0.95
