"""Writing videos from RGB frames with PyAV (generated test media, overlays)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: codec name → (PyAV encoder, pixel format)
CODECS = {"h264": ("libx264", "yuv420p"), "vp9": ("libvpx-vp9", "yuv420p"), "mpeg4": ("mpeg4", "yuv420p")}


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 30.0,
    codec: str = "h264",
    times: Sequence[float] | None = None,
    rotation: int = 0,
    crf: int = 23,
    faststart: bool = False,
) -> Path:
    """Encode RGB frames [H, W, 3] uint8 (even H, W) to ``path``; the suffix picks the container.

    ``times`` gives each frame's presentation time in seconds (variable frame rate, strictly
    increasing); otherwise frame i is shown at i / fps. ``rotation`` stores a display matrix
    (counter-clockwise degrees, as :attr:`av.VideoFrame.rotation` reads it back). ``faststart``
    puts the MP4 index before the media data (as web videos have it).
    """
    path = Path(path)
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}: choose from {', '.join(CODECS)}")
    encoder, pix_fmt = CODECS[codec]
    time_base = Fraction(1, 90000) if times is not None else None
    options = (
        {"movflags": "faststart"} if faststart and path.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
    )
    with av.open(str(path), mode="w", options=options) as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(encoder, rate=rate)
        stream.pix_fmt = pix_fmt
        if codec == "h264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        if codec == "vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "40", "b": "0"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(frames):
            if index == 0:
                stream.height, stream.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times is not None:
                frame.pts = int(round(times[index] / time_base))
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
