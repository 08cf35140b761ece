"""Running a visual backbone over a video, and a text encoder over its captions."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stg_cli.video import VideoInfo, iter_clips, probe


@dataclass
class VideoEncoding:
    """times [U] float32 seconds; global_feats [U, Dv] and grid_feats [U, N, Dv] float32."""

    times: Tensor
    global_feats: Tensor
    grid_feats: Tensor
    info: VideoInfo


def encode_frames(backbone, frames: np.ndarray, batch_size: int = 32) -> tuple[Tensor, Tensor]:
    """Features of frames uint8 [U, clip_len, H, W, 3] → (global [U, Dv], grid [U, N, Dv])."""
    spec = backbone.spec
    if len(frames) == 0:
        return torch.zeros(0, spec.dim), torch.zeros(0, spec.num_cells, spec.dim)
    outputs = [
        backbone.encode(torch.from_numpy(np.array(frames[i : i + batch_size])))  # copies a memmap
        for i in range(0, len(frames), batch_size)
    ]
    return torch.cat([g for g, _ in outputs]), torch.cat([c for _, c in outputs])


def encode_video(
    path: str | os.PathLike,
    backbone,
    fps: float | None = None,
    batch_size: int = 32,
    start: float | None = None,
    end: float | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> VideoEncoding:
    """Decode ``path`` at ``fps`` (default: the backbone's) and encode it batch by batch.

    Frames are squashed to the backbone's input size and grouped in clips of its ``clip_len`` at
    its ``clip_fps`` (see :mod:`stg_cli.video.decode`); memory holds one batch of frames at a
    time. ``on_batch(n)`` is called after each batch of n feature steps. Raises VideoError for
    unreadable videos.
    """
    spec = backbone.spec
    fps = float(fps or spec.fps)
    clip_fps = spec.clip_fps if spec.clip_len > 1 else fps
    times, globals_, grids, info = [], [], [], None
    for info, batch_times, _, frames in iter_clips(
        path, fps, tuple(spec.input_size), spec.clip_len, clip_fps, start, end, batch_size=batch_size
    ):
        global_feats, grid_feats = encode_frames(backbone, frames, batch_size)
        times.append(torch.from_numpy(batch_times.astype(np.float32)))
        globals_.append(global_feats)
        grids.append(grid_feats)
        if on_batch is not None:
            on_batch(len(batch_times))
    if info is None:  # an empty window
        info = probe(path)
        return VideoEncoding(
            torch.zeros(0), torch.zeros(0, spec.dim), torch.zeros(0, spec.num_cells, spec.dim), info
        )
    return VideoEncoding(torch.cat(times), torch.cat(globals_), torch.cat(grids), info)
