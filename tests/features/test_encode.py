from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stg_cli.backbones.base import VisualBackbone, VisualSpec
from stg_cli.features import encode_video
from stg_cli.video import VideoError, write_video


class MeanColour(VisualBackbone):
    """A parameter-free clip model: the grid is each cell's mean colour per frame of the clip."""

    def __init__(self, clip_len: int) -> None:
        super().__init__()
        self.spec = VisualSpec(
            name="mean",
            grid=(2, 2),
            dim=3 * clip_len,
            fps=1.0,
            input_size=(16, 16),
            clip_len=clip_len,
            clip_fps=10.0,
        )
        self.fingerprint = f"mean:{clip_len}"

    def features(self, x: torch.Tensor):
        if x.ndim == 4:
            x = x.unsqueeze(2)  # [B, 3, 1, H, W]
        b, c, t, h, w = x.shape
        cells = x.reshape(b, c, t, 2, h // 2, 2, w // 2).mean(dim=(4, 6))  # [B, 3, T, 2, 2]
        grid = cells.permute(0, 3, 4, 2, 1).reshape(b, 4, t * c)
        return grid.mean(1), grid


def _grey_video(path: Path, frames: int) -> Path:
    """Frame i is uniformly grey at level 4·i, so features tell which frame a clip holds."""
    images = [np.full((32, 48, 3), index * 4, dtype=np.uint8) for index in range(frames)]
    return write_video(path, images, fps=10, crf=0)


@pytest.mark.parametrize("clip_len", [1, 3])
def test_encode_video_batches_and_clips(tmp_path: Path, clip_len: int) -> None:
    path = _grey_video(tmp_path / "q.mp4", 45)  # 4.5 s at 10 fps
    steps = []
    encoding = encode_video(path, MeanColour(clip_len), batch_size=2, on_batch=steps.append)
    assert encoding.times.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and steps == [2, 2, 1]
    assert encoding.grid_feats.shape == (5, 4, 3 * clip_len) and encoding.global_feats.shape == (
        5,
        3 * clip_len,
    )
    levels = encoding.grid_feats[:, 0, :].reshape(5, clip_len, 3)[..., 0] * 255 / 4  # frame indices
    expected = {
        1: [[0], [10], [20], [30], [40]],
        3: [[0, 0, 1], [9, 10, 11], [19, 20, 21], [29, 30, 31], [39, 40, 41]],
    }
    np.testing.assert_allclose(levels.numpy(), expected[clip_len], atol=1.0)
    assert (encoding.info.width, encoding.info.height) == (48, 32)


def test_encode_video_window_and_errors(tmp_path: Path) -> None:
    path = _grey_video(tmp_path / "q.mp4", 45)
    encoding = encode_video(path, MeanColour(1), fps=2.0, start=1.0, end=2.0)
    assert encoding.times.tolist() == [1.0, 1.5]
    empty = encode_video(path, MeanColour(1), start=1.2, end=1.8)
    assert empty.grid_feats.shape == (0, 4, 3)
    (tmp_path / "x.mp4").write_text("nope")
    with pytest.raises(VideoError):
        encode_video(tmp_path / "x.mp4", MeanColour(1))
