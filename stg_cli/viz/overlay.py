"""The overlay video of ``stg ground --viz``: heatmap, point, box, label and a timeline bar.

Each analysed frame (the grounding's frame times, e.g. 1 fps) is drawn once, at the original
resolution, and the overlay plays at that rate, so every second of video shows exactly what was
predicted for it:

- the frame's cell probabilities, upsampled bilinearly to the frame, in a perceptual colormap
  (``inferno`` by default), blended with an opacity proportional to the probability relative to
  the frame's maximum (up to ``alpha``), so cold regions show the video as it is;
- the point (a ring) and the box (a rectangle) in white with a dark outline;
- the label and score in the top-left corner ("background" frames get no heatmap);
- a timeline bar at the bottom: one colour per query (background dark grey) and a cursor.

Encoded with PyAV as H.264 (libx264 ``ultrafast`` preset, CRF 20, yuv420p, MP4 with the index
first so that it streams); odd frame sizes lose their last row/column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stg_cli import files
from stg_cli.ground.output import VideoGrounding
from stg_cli.metrics.heatmaps import upsample

DEFAULT_COLORMAP = "inferno"
DEFAULT_ALPHA = 0.6
BACKGROUND_COLOR = (60, 60, 60)
BAR_FRACTION = 0.035
# a displayed frame within this of an analysed frame's time counts as at it (decoders round
# frame times to their time base)
HOLD_TOLERANCE_S = 1e-3


def colormap_lut(name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The 256-entry RGB table of a matplotlib colormap. → uint8 [256, 3]."""
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}") from None
    return (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def query_colors(count: int) -> np.ndarray:
    """Distinct colours for ``count`` queries (tab10, then tab20). → uint8 [count, 3]."""
    table = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    steps = 10 if count <= 10 else 20
    return np.array(
        [np.array(table(index % steps)[:3]) * 255 for index in range(count)], dtype=np.uint8
    ).reshape(count, 3)


def blend_heatmap(
    frame: np.ndarray, heat: np.ndarray, lut: np.ndarray, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """Blends ``heat`` [H, W] (≥ 0) onto ``frame`` uint8 [H, W, 3]. → uint8 [H, W, 3].

    Colours and opacity follow heat / max(heat) quantised to 256 levels (opacity = ``alpha`` ×
    level / 255); an all-zero map leaves the frame unchanged. Runs in Pillow's C loops.
    """
    peak = float(heat.max()) if heat.size else 0.0
    if peak <= 0:
        return frame.copy()
    levels = np.clip(heat * (255.0 / peak), 0, 255).astype(np.uint8)
    index = Image.fromarray(levels, "L")
    colors = index.convert("P")
    colors.putpalette(lut.astype(np.uint8).tobytes())
    opacity = index.point([int(round(level * alpha)) for level in range(256)])
    return np.asarray(Image.composite(colors.convert("RGB"), Image.fromarray(frame), opacity))


def timeline_strip(grounding: VideoGrounding, width: int, height: int, colors: np.ndarray) -> np.ndarray:
    """The label of every frame along the video, one column per pixel. → uint8 [height, width, 3]."""
    strip = np.empty((height, width, 3), dtype=np.uint8)
    strip[:] = BACKGROUND_COLOR
    times = np.asarray(grounding.times, dtype=np.float64)
    if times.size == 0:
        return strip
    span = _span(grounding)
    columns = np.minimum((np.arange(width) + 0.5) / width * span, span)
    index = np.clip(np.searchsorted(times, columns, side="right") - 1, 0, times.size - 1)
    labels = grounding.detection.labels[index]
    foreground = labels >= 0
    strip[:, foreground] = colors[labels[foreground]]
    return strip


def draw_frame(
    frame: np.ndarray,
    grounding: VideoGrounding,
    index: int,
    lut: np.ndarray,
    strip: np.ndarray,
    colors: np.ndarray,
    font: ImageFont.ImageFont,
    alpha: float = DEFAULT_ALPHA,
) -> np.ndarray:
    """One overlay frame for analysed frame ``index``. frame uint8 [H, W, 3] → uint8 [H, W, 3]."""
    height, width = frame.shape[:2]
    label_index = int(grounding.detection.labels[index])
    image = frame
    if label_index >= 0:
        heat = upsample(grounding.cells[index : index + 1], width, height)[0]
        image = blend_heatmap(frame, heat, lut, alpha)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    location = grounding.locations[index] if label_index >= 0 else None
    if location is not None:
        if location.box is not None:
            x1, y1, x2, y2 = location.box
            draw.rectangle((x1, y1, x2, y2), outline=(0, 0, 0), width=4)
            draw.rectangle((x1, y1, x2, y2), outline=(255, 255, 255), width=2)
        x, y = location.point
        radius = max(4, round(min(width, height) * 0.015))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(0, 0, 0), width=4)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(255, 255, 255), width=2)
    label = grounding.label(index)
    text = f"{label}  {float(grounding.detection.scores[index]):.2f}  t={float(grounding.times[index]):.0f}s"
    left, top, right, bottom = draw.textbbox((8, 6), text, font=font)
    draw.rectangle((left - 4, top - 3, right + 4, bottom + 3), fill=(0, 0, 0))
    color = tuple(int(c) for c in colors[label_index]) if label_index >= 0 else (200, 200, 200)
    draw.text((8, 6), text, font=font, fill=color)
    out = np.asarray(canvas).copy()
    bar = strip.shape[0]
    out[height - bar :] = strip
    span = _span(grounding)
    cursor = min(int(float(grounding.times[index]) / span * width), width - 1) if span > 0 else 0
    out[height - bar :, max(cursor - 1, 0) : cursor + 2] = 255
    return out


def render_overlay(
    grounding: VideoGrounding,
    frames: Iterator[tuple[float, np.ndarray]],
    path: Path,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = DEFAULT_ALPHA,
    on_frame: Callable[[], None] | None = None,
    fps: float | None = None,
) -> Path:
    """Encodes the overlay video to ``path`` (H.264 MP4).

    Args:
        grounding: the predictions of the video.
        frames: ``(time, frame uint8 [H, W, 3])`` in order, at the grounding's width × height,
            e.g. every frame of the video. Each shows the label, heatmap, point and box of the
            latest analysed frame at or before its time (held until the next analysed frame,
            not interpolated), the first analysed frame before it.
        path: output file (written to a temporary name, then renamed).
        on_frame: called after each encoded frame.
        fps: the rate of ``frames`` and of the video written (default: the analysed rate).
    """
    lut = colormap_lut(colormap)
    colors = query_colors(max(len(grounding.queries), 1))
    times = np.asarray(grounding.times, dtype=np.float64)
    even_w, even_h = grounding.width - grounding.width % 2, grounding.height - grounding.height % 2
    bar = max(6, round(even_h * BAR_FRACTION))
    strip = timeline_strip(grounding, even_w, bar, colors)
    font = ImageFont.load_default(size=max(12, round(even_h / 28)))

    def drawn() -> Iterator[np.ndarray]:
        for time, frame in frames:
            if times.size == 0:
                return
            index = max(int(np.searchsorted(times, time + HOLD_TOLERANCE_S, side="right")) - 1, 0)
            image = frame[:even_h, :even_w]
            if image.shape[:2] != (even_h, even_w):
                continue
            yield draw_frame(image, grounding, index, lut, strip, colors, font, alpha)
            if on_frame is not None:
                on_frame()

    with files.atomic_path(path, keep_suffix=True) as temporary:
        encode_h264(temporary, drawn(), fps=max(fps or grounding.fps, 0.01))
    return path


def encode_h264(
    path: Path, frames: Iterator[np.ndarray], fps: float, preset: str = "ultrafast", crf: int = 20
) -> int:
    """Encodes RGB frames uint8 [H, W, 3] (even H, W) to an H.264 MP4; returns the frame count.

    ``ultrafast`` keeps the overlay cheap (it is several times faster than ``veryfast`` here, at
    the price of a larger file); every H.264 decoder plays it.
    """
    count = 0
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": preset, "crf": str(crf)}
        for image in frames:
            if count == 0:
                stream.height, stream.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


def _span(grounding: VideoGrounding) -> float:
    last = float(grounding.times[-1]) + 1.0 / max(grounding.fps, 1e-6) if len(grounding.times) else 0.0
    return max(float(grounding.duration or 0.0), last)
