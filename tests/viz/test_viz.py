"""The overlay video and the timeline figure."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from stg_cli.ground.output import VideoGrounding
from stg_cli.ground.spatial import locate
from stg_cli.ground.temporal import detect
from stg_cli.viz import TruthSegment, blend_heatmap, colormap_lut, plot_timeline, render_overlay
from stg_cli.viz.overlay import query_colors, timeline_strip


def _grounding(width=160, height=120, frames=6) -> VideoGrounding:
    times = np.arange(frames, dtype=np.float32)
    similarity = np.full((frames, 2), 0.1, dtype=np.float32)
    similarity[1:3, 0] = 0.9
    similarity[4:, 1] = 0.8
    detection = detect(similarity, times, tau=0.5, smooth=0)
    cells = np.zeros((frames, 7, 7), dtype=np.float32)
    foreground = detection.labels >= 0
    cells[foreground, 1, 5] = 1.0  # top right
    found = iter(locate(cells[foreground], width, height))
    return VideoGrounding(
        video_id="clip",
        width=width,
        height=height,
        fps=1.0,
        duration=float(frames),
        queries=["crack egg", "pour milk"],
        times=times,
        similarity=similarity,
        detection=detection,
        cells=cells,
        locations=[next(found) if f else None for f in foreground],
    )


def test_colormap_and_blend():
    lut = colormap_lut("inferno")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    with pytest.raises(ValueError):
        colormap_lut("no-such-map")
    frame = np.full((10, 10, 3), 100, dtype=np.uint8)
    heat = np.zeros((10, 10), dtype=np.float32)
    assert np.array_equal(blend_heatmap(frame, heat, lut), frame)
    heat[2, 3] = 1.0
    blended = blend_heatmap(frame, heat, lut, alpha=0.5)
    assert np.array_equal(blended[0, 0], frame[0, 0])
    assert np.allclose(blended[2, 3], 0.5 * 100 + 0.5 * lut[255].astype(float), atol=1)


def test_timeline_strip_colours_segments():
    grounding = _grounding()
    colors = query_colors(2)
    strip = timeline_strip(grounding, 60, 4, colors)
    assert strip.shape == (4, 60, 3)
    assert np.array_equal(strip[0, 15], colors[0])  # t = 1.5 s: crack egg
    assert np.array_equal(strip[0, 5], [60, 60, 60])  # t = 0.5 s: background
    assert np.array_equal(strip[0, 55], colors[1])


def test_overlay_video_is_h264_with_one_frame_per_analysed_frame(tmp_path):
    grounding = _grounding(width=320, height=240)
    frames = [(float(t), np.full((240, 320, 3), 90, dtype=np.uint8)) for t in grounding.times]
    path = render_overlay(grounding, iter(frames), tmp_path / "clip.overlay.mp4")
    assert path.is_file() and not list(tmp_path.glob(".*"))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 6 and decoded[0].shape == (240, 320, 3)
    top_right = (slice(40, 62), slice(232, 270))  # cell (1, 5), below the label
    plain, heated = decoded[0], decoded[1]  # frame 0 background, frame 1 crack egg
    assert np.abs(plain[top_right].astype(int) - 90).mean() < 8
    assert np.abs(heated[top_right].astype(int) - 90).mean() > 30


def test_overlay_at_the_source_rate_holds_each_analysed_frame(tmp_path):
    grounding = _grounding(width=320, height=240)  # analysed at 1 fps, 6 frames
    frames = [(k / 4, np.full((240, 320, 3), 90, dtype=np.uint8)) for k in range(24)]
    path = render_overlay(grounding, iter(frames), tmp_path / "clip.overlay.mp4", fps=4.0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == 4.0
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 24
    top_right = (slice(40, 62), slice(232, 270))
    heat = [np.abs(frame[top_right].astype(int) - 90).mean() > 30 for frame in decoded]
    # analysed frame 0 is background, 1 and 2 crack egg, 3 background, 4 and 5 pour milk
    assert heat == [False] * 4 + [True] * 8 + [False] * 4 + [True] * 8


def test_overlay_with_odd_size_drops_the_last_row_and_column(tmp_path):
    grounding = _grounding(width=161, height=121)
    frames = [(float(t), np.zeros((121, 161, 3), dtype=np.uint8)) for t in grounding.times]
    path = render_overlay(grounding, iter(frames), tmp_path / "odd.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (160, 120)


def test_timeline_png(tmp_path):
    grounding = _grounding()
    truth = [TruthSegment("crack egg", 1, 2), TruthSegment("unknown step", 4, 5)]
    path = plot_timeline(grounding, tmp_path / "clip.timeline.png", ground_truth=truth)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600
    bare = plot_timeline(grounding, tmp_path / "bare.png")
    with Image.open(bare) as image:
        assert image.height < Image.open(path).height
