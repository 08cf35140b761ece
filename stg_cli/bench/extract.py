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

For ``effnet-lite0`` the alternatives to its chosen settings are timed in the same interleaved
rounds, each differing from ``decode + features`` in one setting:

- ``decode + features, 1 thread``: torch on one thread instead of its default (one per core);
- ``decode + features, contiguous``: network and input in the default memory format instead of
  ``channels_last``;
- ``decode + features, no_grad``: under ``torch.no_grad`` instead of ``torch.inference_mode``.

Throughput: **video frames/s** = frames of the source video (seconds × 30) ÷ median time of a
call; ÷ 30 it is "× real time"; the backbone sees one frame per second of video, so its own
frames/s are the video frames/s ÷ 30. Backbones other than ``tiny`` need their weights
(``STG_CLIP_WEIGHTS``, ``STG_S3D_WEIGHTS``; for ``effnet-lite0``/``effnet-lite2`` their
installed weights package or ``STG_EFFNET_LITE0_WEIGHTS``/``STG_EFFNET_LITE2_WEIGHTS``);
without them their case is one skipped row with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch

from stg_cli.backbones import VISUAL_BACKBONES, VisualBackbone, load_visual
from stg_cli.backbones.effnet import load_effnet_visual
from stg_cli.bench.common import Case, Variant, backbone_weights, benchmark_video, missing_weights
from stg_cli.errors import UserError
from stg_cli.features.encode import encode_video
from stg_cli.video import iter_clips

WIDTH, HEIGHT, VIDEO_FPS = 640, 480, 30
QUICK_SECONDS, FULL_SECONDS = 20, 120
STAGE_NAMES = ("decode", "decode + features")
#: variant name → (torch threads or None for the default, channels_last, inference_mode)
EFFNET_ALTERNATIVES = {
    "decode + features, 1 thread": (1, True, True),
    "decode + features, contiguous": (None, False, True),
    "decode + features, no_grad": (None, True, False),
}
TIMED_ALTERNATIVES = ("effnet-lite0",)
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
            if name in TIMED_ALTERNATIVES:
                variants += [
                    Variant(variant, _setup_alternative(variant, name, device, seconds))
                    for variant in EFFNET_ALTERNATIVES
                ]
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


@functools.lru_cache(maxsize=2)
def _alternative_backbone(
    name: str, device: str, channels_last: bool, inference_mode: bool
) -> VisualBackbone:

    backbone = load_effnet_visual(name, backbone_weights(name), channels_last, inference_mode)
    return backbone.to(device)


def decode(path: Path, backbone: VisualBackbone) -> int:
    """Decodes ``path`` and samples the clips ``backbone`` takes; returns the number of clips."""

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

        try:
            backbone = _backbone(name, str(device))
        except UserError as error:
            return f"cannot load {name}: {error}"
        path = video(seconds)
        if stage == "decode":
            return lambda: decode(path, backbone)
        return lambda: encode_video(path, backbone)

    return setup


def _setup_alternative(
    variant: str, name: str, device: torch.device, seconds: int
) -> Callable[[], Callable[[], object] | str]:
    threads, channels_last, inference_mode = EFFNET_ALTERNATIVES[variant]

    def setup() -> Callable[[], object] | str:

        try:
            if channels_last and inference_mode:
                backbone = _backbone(name, str(device))
            else:
                backbone = _alternative_backbone(name, str(device), channels_last, inference_mode)
        except UserError as error:
            return f"cannot load {name}: {error}"
        path = video(seconds)
        if threads is None:
            return lambda: encode_video(path, backbone)

        def call() -> object:
            default = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return encode_video(path, backbone)
            finally:
                torch.set_num_threads(default)

        return call

    return setup
