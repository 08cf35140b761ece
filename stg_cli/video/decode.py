"""Decoding videos into frames sampled by timestamp, with PyAV.

Sampling rule: for a feature rate ``fps`` the sampling times are ``t_k = k / fps`` (k = 0, 1, …,
seconds from the start of the video stream); the frame used for ``t_k`` is the first decoded frame
whose presentation time is ≥ ``t_k``. This holds for constant and variable frame rate alike and
needs no frame count or duration: sampling simply stops at the last decoded frame.

Video backbones (``clip_len > 1``) get, for each ``t_k``, ``clip_len`` frames sampled by the same
rule at ``t_k + (j - (clip_len - 1) / 2) / clip_fps`` (j = 0 … clip_len-1): the clip is centred on
``t_k``; sampling times before the first frame take the first frame, and those after the last frame
take the last frame.

Resize policy (squash): the whole displayed frame is resized to the backbone input size without
cropping or padding, so grid cell (i, j) of a gh × gw grid always covers rows
[i·H/gh, (i+1)·H/gh) and columns [j·W/gw, (j+1)·W/gw) of the original frame. This is what maps
heatmaps back to pixels; the aspect-ratio distortion is the price (CLIP-style centre crops would
lose the frame borders, where annotated objects often are).

Rotation metadata (display matrix) is applied: frames and ``VideoInfo.width``/``height`` are in
display orientation, as a player shows them and as annotations are drawn.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stg_cli.errors import UserError

#: Decoder threads per video (FFmpeg frame + slice threading). Measured on a 60 s 640×480 h264
#: video at 30 fps on 2 cores (the 1800 frames must all be decoded to sample 60 at 1 fps):
#: 1 thread 2.18 s, 2 threads 1.45 s, 4 threads 1.29 s; more threads than cores did not slow it
#: down. ``stg extract --workers W`` gives each decoding process cores // W threads instead.
#: Override with STG_DECODE_THREADS.
DEFAULT_THREADS = min(os.cpu_count() or 1, 4)

#: Time tolerance when comparing a frame's timestamp to a sampling time (float rounding only).
_EPS = 1e-6

#: PyAV before 19 decodes metadata tags with one codec per container and fails to open a file
#: with a tag in another encoding unless told to drop the bad bytes; PyAV 19 removed the option
#: (tags are always read as UTF-8 with surrogateescape, so opening never fails on them).
_OPEN_OPTIONS: dict[str, str] = (
    {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}
)


class VideoError(UserError):
    """A video that cannot be read: missing, not a video, no video stream, corrupt or truncated."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as displayed (rotation applied).

    ``duration`` is in seconds (the video stream's, else the container's; ``None`` when neither
    is recorded, as in live-recorded webm), ``fps`` the average frame rate (``None`` if unknown),
    ``rotation`` the counter-clockwise display rotation in degrees (0, 90, 180, 270).
    """

    width: int
    height: int
    duration: float | None
    fps: float | None
    rotation: int
    codec: str

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "duration": self.duration,
            "fps": self.fps,
            "rotation": self.rotation,
            "codec": self.codec,
        }


@dataclass
class DecodedFrames:
    """Frames sampled from a video.

    times:  [U] float64 sampling times t_k (clip centres) in seconds
    pts:    [U] float64 presentation time of the frame used for t_k (the clip's centre frame)
    frames: [U, clip_len, H, W, 3] uint8 RGB, H × W the requested size (else the display size)
    """

    times: np.ndarray
    pts: np.ndarray
    frames: np.ndarray
    info: VideoInfo


def _short(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file")
    try:
        return av.open(str(path), mode="r", **_OPEN_OPTIONS)
    except av.FFmpegError as error:
        raise VideoError(
            f"{path}: not a readable video: truncated, corrupt or another kind of file ({_reason(error)})"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise VideoError(f"{path}: not a readable video ({_short(error)})") from None
    except (TypeError, AttributeError) as error:
        # a PyAV whose API moved on (an argument or attribute removed): say which PyAV it was
        raise VideoError(
            f"{path}: cannot open it with PyAV {av.__version__} ({type(error).__name__}: {_short(error)})"
        ) from None


def _reason(error: BaseException) -> str:
    message = getattr(error, "strerror", None) or _short(error)
    return str(message).rstrip(":").strip()


def _rotation(first: av.VideoFrame | None) -> int:
    """Counter-clockwise display rotation in 0, 90, 180, 270 (others are not applied: 0)."""
    degrees = first.rotation if first is not None else 0
    return degrees % 360 if degrees % 90 == 0 else 0


def _stream_info(container: av.container.InputContainer, stream, first: av.VideoFrame | None) -> VideoInfo:
    rotation = _rotation(first)
    width = stream.codec_context.width or (first.width if first is not None else 0)
    height = stream.codec_context.height or (first.height if first is not None else 0)
    if rotation in (90, 270):
        width, height = height, width
    duration = None
    if stream.duration is not None and stream.time_base and stream.duration > 0:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None and container.duration > 0:
        duration = container.duration / av.time_base
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else None
    return VideoInfo(
        width=int(width),
        height=int(height),
        duration=duration,
        fps=fps,
        rotation=rotation,
        codec=stream.codec_context.name,
    )


def _video_stream(container: av.container.InputContainer, path: Path):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoError(f"{path}: no video stream ({', '.join(kinds)} only)")
    return container.streams.video[0]


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, duration, frame rate, rotation and codec of ``path`` (decodes one frame).

    Raises VideoError with one line when the file is missing, not a video, has no video stream or
    no decodable frame.
    """
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.FFmpegError as error:
            raise VideoError(f"{path}: corrupt or truncated video ({_reason(error)})") from None
        if first is None:
            raise VideoError(f"{path}: no decodable video frame")
        return _stream_info(container, stream, first)


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None, rotation: int) -> np.ndarray:
    """[H, W, 3] uint8 in display orientation, squashed to ``size`` = (H, W) when given."""
    if size is None:
        image = frame.to_ndarray(format="rgb24")
    else:
        height, width = size
        if rotation in (90, 270):
            height, width = width, height
        image = frame.to_ndarray(format="rgb24", width=width, height=height)
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image


def _frame_time(frame: av.VideoFrame, start: Fraction) -> float | None:
    if frame.pts is None or not frame.time_base:  # PyAV 19: an unset time base is 0/1, not None
        return None
    return float(frame.pts * frame.time_base - start)


def iter_clips(
    path: str | os.PathLike,
    fps: float,
    size: tuple[int, int] | None,
    clip_len: int = 1,
    clip_fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    batch_size: int = 32,
    threads: int | None = None,
) -> Iterator[tuple[VideoInfo, np.ndarray, np.ndarray, np.ndarray]]:
    """Stream the sampled clips of ``path`` in batches (see the module docstring for the rule).

    ``start``/``end`` (seconds) restrict sampling to ``start ≤ t_k < end``, seeking to the
    key frame before the window instead of decoding from the beginning; the sampling times stay
    on the same ``k / fps`` grid as a full decode.

    Yields ``(info, times [B] float64, pts [B] float64, frames [B, clip_len, H, W, 3] uint8)``.
    Raises VideoError (one line) for unreadable, video-less, corrupt or truncated files.
    """
    path = Path(path)
    if not fps > 0 or not math.isfinite(fps):
        raise UserError(f"fps must be a positive number, got {fps}")
    if clip_len < 1:
        raise UserError(f"clip_len must be ≥ 1, got {clip_len}")
    clip_fps = float(clip_fps if clip_fps is not None else fps)
    if not clip_fps > 0:
        raise UserError(f"clip_fps must be positive, got {clip_fps}")
    threads = threads or int(os.environ.get("STG_DECODE_THREADS", DEFAULT_THREADS))
    offsets = (np.arange(clip_len, dtype=np.float64) - (clip_len - 1) / 2) / clip_fps
    half_span = float(-offsets[0])
    k0 = 0 if start is None or start <= 0 else math.ceil(start * fps - _EPS)

    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        origin = Fraction(0)
        if stream.start_time is not None and stream.time_base:
            origin = stream.start_time * stream.time_base
        seek_to = k0 / fps - half_span
        if seek_to > 0:
            try:
                container.seek(
                    int((origin + Fraction(seek_to)) / stream.time_base),
                    stream=stream,
                    backward=True,
                    any_frame=False,
                )
            except av.FFmpegError as error:
                raise VideoError(f"{path}: cannot seek ({_reason(error)})") from None

        info: VideoInfo | None = None
        end_k = None if end is None else math.ceil(end * fps - _EPS)  # emit clips k < end_k
        k = k0  # next clip to emit
        pending: dict[tuple[int, int], tuple[float, np.ndarray]] = {}  # (clip, j) → (pts, image)
        # one arithmetic sequence of sampling times per clip position j, merged by a heap
        heap = [(k0 / fps + offsets[j], k0, j) for j in range(clip_len)]
        heapq.heapify(heap)
        if end_k is not None and k0 >= end_k:
            heap = []
        out_times: list[float] = []
        out_pts: list[float] = []
        out_frames: list[np.ndarray] = []
        last: tuple[float, av.VideoFrame, np.ndarray | None] | None = None

        def complete_clips() -> None:
            nonlocal k
            while all((k, j) in pending for j in range(clip_len)):
                clip = np.stack([pending.pop((k, j))[1] for j in range(clip_len)])
                out_times.append(k / fps)
                out_pts.append(centre_pts[k])
                out_frames.append(clip)
                del centre_pts[k]
                k += 1

        centre_pts: dict[int, float] = {}

        def take_batch():
            batch = (
                info,
                np.asarray(out_times, dtype=np.float64),
                np.asarray(out_pts, dtype=np.float64),
                np.stack(out_frames),
            )
            out_times.clear()
            out_pts.clear()
            out_frames.clear()
            return batch

        try:
            for frame in container.decode(stream):
                t = _frame_time(frame, origin)
                if t is None:
                    continue
                if info is None:
                    info = _stream_info(container, stream, frame)
                if last is not None and t <= last[0] + _EPS:
                    continue  # repeated timestamp: the first frame at a time wins
                image = None
                while heap and heap[0][0] <= t + _EPS:
                    _, kk, j = heapq.heappop(heap)
                    if image is None:
                        image = _to_rgb(frame, size, info.rotation)
                    pending[(kk, j)] = (t, image)
                    if j == clip_len // 2:
                        centre_pts[kk] = t
                    if end_k is None or kk + 1 < end_k:
                        heapq.heappush(heap, ((kk + 1) / fps + offsets[j], kk + 1, j))
                last = (t, frame, image)
                complete_clips()
                if len(out_frames) >= batch_size:
                    yield take_batch()
                if end_k is not None and k >= end_k:
                    break
        except av.FFmpegError as error:
            raise VideoError(f"{path}: corrupt or truncated video ({_reason(error)})") from None

        if info is None:
            raise VideoError(f"{path}: no decodable video frame")
        # past the last frame: clips whose centre frame exists are completed with the last frame
        if clip_len > 1 and last is not None:
            tail = last[2] if last[2] is not None else _to_rgb(last[1], size, info.rotation)
            while k in centre_pts:
                for j in range(clip_len):
                    pending.setdefault((k, j), (last[0], tail))
                complete_clips()
        if out_frames:
            yield take_batch()
        if end_k is None:
            _check_complete(path, container, stream, info, last[0] if last is not None else 0.0)


def _check_complete(path: Path, container, stream, info: VideoInfo, last_time: float) -> None:
    """Truncated files may decode without error but stop early: compare with the recorded duration.

    Only a duration that is the video's own counts: the video stream's, or the container's when
    it holds no other stream (an audio track may legitimately outlast the picture).
    """
    if info.duration is None or info.fps is None:
        return
    own = stream.duration is not None and stream.duration > 0
    if not own and len(container.streams) > 1:
        return
    expected_last = info.duration - 1.0 / info.fps
    if last_time < expected_last - max(2.0, 0.1 * info.duration):
        raise VideoError(
            f"{path}: truncated video (frames stop at {last_time:.1f} s of {info.duration:.1f} s)"
        )


def decode_frames(
    path: str | os.PathLike,
    fps: float,
    size: tuple[int, int] | None,
    clip_len: int = 1,
    clip_fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    threads: int | None = None,
) -> DecodedFrames:
    """All sampled clips of ``path`` at once (see :func:`iter_clips`; holds every frame in memory).

    Returns times [U], pts [U], frames uint8 [U, clip_len, H, W, 3] with (H, W) = ``size`` or the
    display size. U = 0 only for a window with no frame in it.
    """
    times, pts, frames, info = [], [], [], None
    for info, batch_times, batch_pts, batch in iter_clips(
        path, fps, size, clip_len, clip_fps, start, end, threads=threads
    ):
        times.append(batch_times)
        pts.append(batch_pts)
        frames.append(batch)
    if info is None:
        info = probe(path)
        height, width = size if size is not None else (info.height, info.width)
        empty = np.zeros((0, clip_len, height, width, 3), dtype=np.uint8)
        return DecodedFrames(np.zeros(0), np.zeros(0), empty, info)
    return DecodedFrames(
        times=np.concatenate(times), pts=np.concatenate(pts), frames=np.concatenate(frames), info=info
    )
