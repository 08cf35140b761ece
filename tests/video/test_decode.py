from __future__ import annotations

import io
import math
from pathlib import Path

import av
import numpy as np
import pytest

from stg_cli.errors import UserError
from stg_cli.video import VideoError, decode_frames, iter_clips, probe, write_video

H, W = 48, 64
BITS = 8  # frame index written as 8 vertical black/white bands


def indexed_frames(count: int, height: int = H, width: int = W):
    """Frames whose index can be read back after lossy compression (see read_index)."""
    band = width // BITS
    for index in range(count):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        for bit in range(BITS):
            if index >> bit & 1:
                image[:, bit * band : (bit + 1) * band] = 255
        yield image


def read_index(image: np.ndarray) -> int:
    """Index of a frame from indexed_frames, also after resizing (bands scale with the width)."""
    width = image.shape[1]
    band = width / BITS
    value = 0
    for bit in range(BITS):
        column = image[:, int((bit + 0.5) * band)].mean()
        value |= int(column > 127) << bit
    return value


def indices(frames: np.ndarray) -> list[int]:
    return [read_index(frame) for frame in frames]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    paths = {
        "h264": write_video(root / "a.mp4", indexed_frames(95), fps=30),
        "vp9": write_video(root / "a.webm", indexed_frames(95), fps=30, codec="vp9"),
        "mpeg4": write_video(root / "a.avi", indexed_frames(95), fps=30, codec="mpeg4"),
    }
    return paths


@pytest.mark.parametrize("codec", ["h264", "vp9", "mpeg4"])
def test_probe_and_sample_at_one_fps(media: dict[str, Path], codec: str) -> None:
    info = probe(media[codec])
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.fps == pytest.approx(30.0)
    assert info.duration == pytest.approx(95 / 30, abs=0.05)
    decoded = decode_frames(media[codec], fps=1.0, size=None)
    assert decoded.times.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert decoded.frames.shape == (4, 1, H, W, 3) and decoded.frames.dtype == np.uint8
    assert indices(decoded.frames[:, 0]) == [0, 30, 60, 90]
    assert decoded.pts == pytest.approx([0, 1, 2, 3])


def test_fractional_fps_takes_first_frame_at_or_after_each_time(media: dict[str, Path]) -> None:
    decoded = decode_frames(media["h264"], fps=2.5, size=None)
    expected_times = [k / 2.5 for k in range(8)]  # 3.2 s is after the last frame (94/30)
    assert decoded.times == pytest.approx(expected_times)
    assert indices(decoded.frames[:, 0]) == [math.ceil(t * 30 - 1e-9) for t in expected_times]


def test_squash_resize_keeps_the_whole_frame(media: dict[str, Path]) -> None:
    decoded = decode_frames(media["h264"], fps=1.0, size=(30, 40))
    assert decoded.frames.shape == (4, 1, 30, 40, 3)
    # the bands (fractions of the width) survive a resize to another aspect ratio: no crop
    assert indices(decoded.frames[:, 0]) == [0, 30, 60, 90]


def test_variable_frame_rate(tmp_path: Path) -> None:
    times = [0.0, 0.3, 1.7, 1.9, 4.0, 4.5]
    path = write_video(tmp_path / "vfr.mp4", indexed_frames(len(times)), times=times)
    decoded = decode_frames(path, fps=1.0, size=None)
    assert decoded.times.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert decoded.pts == pytest.approx([0.0, 1.7, 4.0, 4.0, 4.0])
    assert indices(decoded.frames[:, 0]) == [0, 2, 4, 4, 4]


@pytest.mark.parametrize(
    ("rotation", "stored", "corner"), [(90, 90, (-8, 8)), (-90, 270, (8, -8)), (180, 180, (-8, -8))]
)
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int, stored: int, corner) -> None:
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[:16, :16] = 255  # a white square at the top-left of the coded frame
    path = write_video(tmp_path / "rot.mp4", [image] * 3, fps=30, rotation=rotation)
    info = probe(path)
    display = (H, W) if stored in (90, 270) else (W, H)
    assert (info.width, info.height, info.rotation) == (*display, stored)
    frame = decode_frames(path, fps=30.0, size=None).frames[0, 0]
    assert frame.shape == (display[1], display[0], 3)
    # rotated counter-clockwise for display: 90° takes the top-left corner to the bottom-left,
    # 270° to the top-right, 180° to the bottom-right
    assert frame[corner].mean() > 200 and frame[8, 8].mean() < 50
    squashed = decode_frames(path, fps=30.0, size=(32, 24)).frames
    assert squashed.shape[2:4] == (32, 24)


def test_clips_are_centred_and_clamped(media: dict[str, Path]) -> None:
    decoded = decode_frames(media["h264"], fps=1.0, size=None, clip_len=4, clip_fps=10.0)
    assert decoded.frames.shape == (4, 4, H, W, 3)
    got = [indices(clip) for clip in decoded.frames]
    # sampling times t + (-0.15, -0.05, 0.05, 0.15): before 0 → first frame, after 94/30 → last
    assert got[0] == [0, 0, 2, 5]
    assert got[1] == [26, 29, 32, 35]
    assert got[3] == [86, 89, 92, 94]


def test_window_matches_full_decode(media: dict[str, Path]) -> None:
    full = decode_frames(media["h264"], fps=2.0, size=(24, 32))
    window = decode_frames(media["h264"], fps=2.0, size=(24, 32), start=1.2, end=2.6)
    assert window.times.tolist() == [1.5, 2.0, 2.5]
    selected = np.isin(full.times, window.times)
    np.testing.assert_array_equal(window.frames, full.frames[selected])
    assert len(decode_frames(media["h264"], fps=1.0, size=None, start=2.2, end=2.8).times) == 0


def test_batches_stream_in_order(media: dict[str, Path]) -> None:
    batches = list(iter_clips(media["vp9"], fps=10.0, size=(8, 8), batch_size=7))
    assert [len(times) for _, times, _, _ in batches] == [7, 7, 7, 7, 4]
    times = np.concatenate([times for _, times, _, _ in batches])
    assert times == pytest.approx(np.arange(32) / 10)


def test_missing_duration_webm(tmp_path: Path) -> None:
    """Live-recorded webm (non-seekable output) has no duration: sampling runs to the last frame."""

    class Unseekable(io.RawIOBase):
        def __init__(self, handle):
            self.handle = handle

        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            return self.handle.write(data)

    path = tmp_path / "live.webm"
    with open(path, "wb") as handle, av.open(Unseekable(handle), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for image in indexed_frames(75):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    info = probe(path)
    assert info.duration is None
    decoded = decode_frames(path, fps=1.0, size=None)
    assert decoded.times.tolist() == [0.0, 1.0, 2.0]
    assert indices(decoded.frames[:, 0]) == [0, 30, 60]


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_bad_files_raise_one_line_video_errors(tmp_path: Path, media: dict[str, Path]) -> None:
    data = media["h264"].read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases = {
        tmp_path / "truncated.mp4": "not a readable video",
        tmp_path / "text.mp4": "not a readable video",
        tmp_path / "empty.mp4": "empty file",
        tmp_path / "missing.mp4": "no such file",
        _audio_only(tmp_path / "audio.m4a"): r"no video stream \(audio only\)",
        tmp_path: "is a directory",
    }
    for path, message in cases.items():
        for call in (lambda p: probe(p), lambda p: decode_frames(p, 1.0, (8, 8))):
            with pytest.raises(VideoError, match=message) as caught:
                call(path)
            assert isinstance(caught.value, UserError)
            assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_truncated_stream_is_detected(tmp_path: Path) -> None:
    """A file cut inside its media data (index at the front) fails instead of passing as short."""
    rng = np.random.default_rng(0)
    noise = (rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(150))
    for name, codec in (("fs.mp4", "h264"), ("cut.webm", "vp9")):
        path = write_video(tmp_path / name, noise, fps=30, codec=codec, faststart=True)
        noise = (rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(150))
        data = path.read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(VideoError, match="truncated"):
            decode_frames(cut, 1.0, (8, 8))


def test_bad_arguments(media: dict[str, Path]) -> None:
    with pytest.raises(UserError, match="fps"):
        decode_frames(media["h264"], fps=0.0, size=None)
    with pytest.raises(UserError, match="clip_len"):
        decode_frames(media["h264"], fps=1.0, size=None, clip_len=0)


def test_audio_outlasting_the_picture_is_not_truncation(tmp_path: Path) -> None:
    path = tmp_path / "av.webm"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libvpx-vp9", rate=30)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.options = {"deadline": "realtime", "cpu-used": "8"}
        audio = container.add_stream("libopus", rate=48000)
        for image in indexed_frames(45):
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for index in range(48000 * 20 // 960):  # 20 s of silence
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48000, index * 960
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    assert probe(path).duration == pytest.approx(20.0, abs=0.1)  # the container's: picture ends at 1.5 s
    decoded = decode_frames(path, fps=1.0, size=None)
    assert indices(decoded.frames[:, 0]) == [0, 30]


def test_metadata_in_another_encoding_does_not_stop_decoding(tmp_path: Path) -> None:
    """A title tag written in Latin-1 (not UTF-8) is not a reason to refuse the video."""
    path = tmp_path / "latin1.mkv"
    with av.open(str(path), "w") as container:
        container.metadata["title"] = "Café crème"
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for image in indexed_frames(45):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    utf8 = "Café crème".encode()
    latin1 = "Café crème".encode("latin-1").ljust(len(utf8))  # same length: the file stays valid
    data = path.read_bytes()
    assert data.count(utf8) == 1
    path.write_bytes(data.replace(utf8, latin1))
    assert (probe(path).width, probe(path).height) == (W, H)
    assert indices(decode_frames(path, fps=1.0, size=None).frames[:, 0]) == [0, 30]


def test_pyav_api_mismatch_is_a_video_error(monkeypatch: pytest.MonkeyPatch, media: dict[str, Path]) -> None:
    """A PyAV whose av.open no longer takes an argument stg passes: one line naming the PyAV."""

    def moved_on(*args, **kwargs):
        raise TypeError("open() got an unexpected keyword argument 'some_option'")

    monkeypatch.setattr(av, "open", moved_on)
    for call in (probe, lambda p: decode_frames(p, 1.0, (8, 8))):
        with pytest.raises(VideoError, match=f"PyAV {av.__version__}.*some_option") as caught:
            call(media["h264"])
        assert "\n" not in str(caught.value) and str(media["h264"]) in str(caught.value)
