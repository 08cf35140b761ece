"""Feature extraction speed: decoding alone, and decoding + the visual backbone, in frames/s.

The video (H.264, 30 fps, 640×480: moving coloured blocks on a gradient; 120 s, ``quick``: 20 s)
is generated once with PyAV and cached in ``$STG_BENCH_CACHE`` (default ``~/.cache/stg/bench``,
see :func:`stg_cli.bench.common.benchmark_video`). One case per visual backbone; each timed call
processes the whole video at the backbone's feature rate, input size and clip length, as
``stg extract`` does:

- ``decode``: decode every frame and sample the backbone's clips, squashed to its input size
  (:func:`stg_cli.video.iter_clips`), nothing else;
- ``decode + features``: the same, with the backbone run over each batch of clips
  (:func:`stg_cli.features.encode.encode_video`, what ``stg extract`` runs per video).

Throughput: **video frames/s** = frames of the source video (seconds × 30) ÷ median time of a
call; ÷ 30 it is "× real time". Backbones other than ``tiny`` need their weights
(``STG_CLIP_WEIGHTS``, ``STG_S3D_WEIGHTS``); without them their case is one skipped row with
the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch

from stg_cli.backbones import VISUAL_BACKBONES, VisualBackbone, load_visual
from stg_cli.bench.common import (
    Case,
    Variant,
    backbone_weights,
    benchmark_video,
    missing_weights,
)
from stg_cli.errors import UserError

WIDTH, HEIGHT, VIDEO_FPS = 640, 480, 30
QUICK_SECONDS, FULL_SECONDS = 20, 120
STAGE_NAMES = ("decode", "decode + features")
UNIT = "video frames"


def cases(quick: bool, device: torch.device) -> list[Case]:
    """One case per visual backbone on ``device``; ``quick`` uses the 20-s video."""
    seconds = QUICK_SECONDS if quick else FULL_SECONDS
    out = []
    for name in VISUAL_BACKBONES:
        shape = (
            f"{name}, {WIDTH}×{HEIGHT} {VIDEO_FPS} fps {seconds}-s video at the backbone's "
            f"rate and input size: {UNIT}/s (÷ {VIDEO_FPS} = × real time)"
        )
        reason = missing_weights(name)
        if reason is not None:
            variants = [Variant(" and ".join(STAGE_NAMES), lambda reason=reason: reason)]
        else:
            variants = [Variant(stage, _setup(stage, name, device, seconds)) for stage in STAGE_NAMES]
        out.append(
            Case(
                op="extract",
                shape=shape,
                device=str(device),
                variants=variants,
                units_per_call=seconds * VIDEO_FPS,
                unit=UNIT,
            )
        )
    return out


def video(seconds: int) -> Path:
    """The cached WIDTH × HEIGHT, VIDEO_FPS benchmark video of ``seconds`` seconds."""
    return benchmark_video(width=WIDTH, height=HEIGHT, seconds=seconds, fps=VIDEO_FPS)


@functools.lru_cache(maxsize=1)
def _backbone(name: str, device: str) -> VisualBackbone:
    return load_visual(name, backbone_weights(name), device=device)


def decode(path: Path, backbone: VisualBackbone) -> int:
    """Decodes ``path`` and samples the clips ``backbone`` takes; returns the number of clips."""
    from stg_cli.video import iter_clips

    spec = backbone.spec
    fps = float(spec.fps)
    clip_fps = spec.clip_fps if spec.clip_len > 1 else fps
    return sum(
        len(times)
        for _, times, _, _ in iter_clips(path, fps, tuple(spec.input_size), spec.clip_len, clip_fps)
    )


def _setup(
    stage: str, name: str, device: torch.device, seconds: int
) -> Callable[[], Callable[[], object] | str]:
    def setup() -> Callable[[], object] | str:
        from stg_cli.features.encode import encode_video

        try:
            backbone = _backbone(name, str(device))
        except UserError as error:
            return f"cannot load {name}: {error}"
        path = video(seconds)
        if stage == "decode":
            return lambda: decode(path, backbone)
        return lambda: encode_video(path, backbone)

    return setup
