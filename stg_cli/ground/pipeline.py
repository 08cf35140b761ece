"""The ``stg ground`` pipeline: videos + queries + a trained model → predictions (+ pictures).

Per video:

1. frames: decoded at the model's feature rate (the feature store's fps, or ``fps``) and squashed
   to the visual backbone's input size, then encoded by the same frozen backbone that made the
   training features (global [F, Dv] and grid [F, N, Dv] tokens). With a feature store
   (``features``), a video whose id is in the store is read from it instead;
2. temporal: S = cos(f(frame), g(query)) [F, Q], then :func:`stg_cli.ground.temporal.detect`
   (τ, majority filter) gives labels and segments;
3. spatial: for each segment, the local branch runs on the segment's frames (clips of at most
   ``frames_t`` frames) with the segment's query, and the ``paper`` chain or the ``rollout`` of
   its attention gives a probability over grid cells per frame;
   :func:`stg_cli.ground.spatial.locate` turns it into a point and a box in video pixels;
4. outputs: ``<id>.json`` + ``<id>.heatmaps.npz`` (see :mod:`stg_cli.ground.output`) and, with
   ``viz``, ``<id>.overlay.mp4`` and ``<id>.timeline.png``.

A query none of whose words the text encoder knows (a word2vec vocabulary has no subwords) has
no embedding: its similarity column is 0, it is never detected (whatever τ), and it is listed
in :attr:`VideoResult.unknown_queries`.

The text encoder is the one that encoded the training captions; it is looked up in this order:
``text_encoder/`` beside the export (in the export folder, then its run folder), the feature
store given with ``features``, and last the named pretrained encoder of the store configuration
(``minilm``, ``clip``), reloaded and checked against the recorded fingerprint. A word2vec model
trained on the captions lives only in its feature store: pass ``features``.

Workers (:func:`ground_videos` with ``workers`` W ≥ 1): W spawned processes ground whole videos,
each with its own :class:`Grounder` loaded from the same checkpoint, feature store and device
(a CUDA device is shared by all of them, each holding a copy of the model and the backbone) and
``cores // W`` torch threads. The main process encodes the queries once and hands each video to
a worker; at most W videos are in flight. Results, files and ``predictions.json`` are the ones
W = 0 gives. A worker that dies (out of memory, a crash in a decoder) takes its videos with it:
they are redone one at a time, so that only the video that kills its worker fails. On Ctrl-C
the main process ends the workers (they ignore SIGINT) and every finished video keeps its files.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch

from stg_cli.errors import UserError, error_text
from stg_cli.files import safe_name
from stg_cli.ground.output import VideoGrounding, write_video
from stg_cli.ground.queries import QuerySet
from stg_cli.ground.spatial import DEFAULT_MASK_THRESHOLD, FrameLocation, locate
from stg_cli.ground.temporal import DEFAULT_SMOOTH, DEFAULT_TAU, detect, given_segments
from stg_cli.models.grounding import HEATMAP_MODES, video_means
from stg_cli.processes import ignore_interrupts, interrupts_ignored, stop, threads_per_worker
from stg_cli.video_files import VideoInput

STAGES = ("decode", "features", "temporal", "spatial", "viz")
# the overlay plays at the video's rate up to this (a 120 fps phone video is drawn at 60)
MAX_OVERLAY_FPS = 60.0
# what grounding one video may raise without ending the run: the video is recorded as failed
VIDEO_ERRORS = (UserError, ValueError, RuntimeError, OSError, MemoryError, av.FFmpegError)


@dataclass(frozen=True)
class GroundSettings:
    """Options of a grounding run (defaults as documented in the temporal/spatial modules).

    ``tau``: the detection threshold; None takes the model's calibrated one
    (:mod:`stg_cli.train.calibration`), or :data:`DEFAULT_TAU` for a model without one.
    ``trimmed``: take when and what from the video's ground-truth segments instead of detecting
    them (:func:`stg_cli.ground.temporal.given_segments`), and predict only where.
    """

    tau: float | None = None
    smooth: int = DEFAULT_SMOOTH
    heatmap: str = "global"
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    fps: float | None = None
    viz: bool = False
    batch_size: int = 32
    trimmed: bool = False

    def __post_init__(self) -> None:
        if self.heatmap not in HEATMAP_MODES:
            raise UserError(f"--heatmap must be one of {', '.join(HEATMAP_MODES)}, got {self.heatmap!r}")
        if self.tau is not None and not np.isfinite(self.tau):
            raise UserError(f"--tau must be a number, got {self.tau}")
        if not 0.0 <= self.mask_threshold <= 1.0:
            raise UserError(f"--mask-threshold must be in [0, 1], got {self.mask_threshold}")
        if self.fps is not None and not (self.fps > 0 and np.isfinite(self.fps)):
            raise UserError(f"--fps must be positive, got {self.fps}")


@dataclass
class Timings:
    """Seconds spent per stage (see :data:`STAGES`), summed over videos."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


@dataclass
class VideoResult:
    """What grounding one video produced (``error`` set instead when it failed)."""

    video_id: str
    source: str
    grounding: VideoGrounding | None = None
    prediction: dict | None = None
    files: dict[str, str] = field(default_factory=dict)
    unknown_queries: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class QueryEmbeddings:
    """Encoded queries: g [Q, d] (rows of unknown queries are 0), words [Q, K, Dw], mask [Q, K]."""

    queries: list[str]
    sentence: torch.Tensor
    words: torch.Tensor
    mask: torch.Tensor

    @property
    def known(self) -> list[bool]:
        return self.mask.any(dim=1).tolist()


class Grounder:
    """A loaded model with its backbones, ready to ground videos (see the module docstring)."""

    def __init__(
        self,
        checkpoint: Path,
        features: Path | None = None,
        device: str = "cpu",
    ) -> None:
        from stg_cli.models.export import load_export

        self.device = resolve_device(device)
        loaded = load_export(Path(checkpoint), device=self.device)
        self.model = loaded.model.eval()
        self.config = loaded.config
        self.store_config = dict(loaded.store_config)
        self.checkpoint = Path(checkpoint)
        self.store = None
        if features is not None:
            from stg_cli.features import FeatureStore

            self.store = FeatureStore.open(Path(features))
            self._check_store(self.store)
        self.text_encoder = self._text_encoder()
        if self.text_encoder.dim != self.config.text_dim:
            raise UserError(
                f"the text encoder gives {self.text_encoder.dim}-d words but the model expects "
                f"{self.config.text_dim}-d"
            )
        self._backbone = None

    @property
    def fps(self) -> float:
        """The rate features were made at (the store's), 1 fps when the export does not say."""
        return float(self.store_config.get("fps") or 1.0)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.config.grid)

    def backbone(self):
        """The visual backbone of the training features (loaded on first use)."""
        if self._backbone is None:
            from stg_cli.backbones import load_visual

            name = self.store_config.get("backbone")
            if not name:
                raise UserError(f"{self.checkpoint} does not record its visual backbone")
            backbone = load_visual(name, self.store_config.get("weights"), device=str(self.device))
            expected = self.store_config.get("visual_fingerprint")
            if expected and backbone.fingerprint != expected:
                raise UserError(
                    f"the {name} weights found now are not the ones the model was trained on "
                    f"(fingerprint {backbone.fingerprint}, trained on {expected})"
                )
            if backbone.spec.dim != self.config.visual_dim:
                raise UserError(
                    f"the {name} backbone gives {backbone.spec.dim}-d features but the model "
                    f"expects {self.config.visual_dim}-d"
                )
            self._backbone = backbone
        return self._backbone

    def threshold(self, settings: GroundSettings) -> float:
        """The detection threshold τ of a run: ``settings.tau``, else the model's calibrated
        one, else :data:`DEFAULT_TAU`."""
        if settings.tau is not None:
            return float(settings.tau)
        calibrated = self.model.calibrated_threshold
        return DEFAULT_TAU if calibrated is None else calibrated

    def embed_queries(self, queries: list[str]) -> QueryEmbeddings:
        """Encodes the queries once: g(sentence) [Q, d] plus the word tokens for the heatmaps."""
        features = self.text_encoder.encode(list(queries))
        with torch.no_grad():
            sentence = self.model.sentence_embeddings(features.sentence.to(self.device)).float().cpu()
        known = features.mask.any(dim=1)
        sentence = sentence * known[:, None]
        return QueryEmbeddings(list(queries), sentence, features.words.float(), features.mask.bool())

    def ground(
        self,
        video: VideoInput,
        queries: QueryEmbeddings,
        settings: GroundSettings,
        out: Path,
        timings: Timings | None = None,
        on_step: Callable[[str, int, int], None] | None = None,
        ground_truth: Sequence | None = None,
    ) -> VideoResult:
        """Grounds one video and writes its files into ``out`` (see the module docstring).

        ``on_step(stage, done, total)`` reports progress inside the video.
        Raises UserError (VideoError) when the video cannot be read.
        """
        timings = timings or Timings()
        source = str(video.path) if video.path is not None else f"{video.video_id} (feature store)"
        result = VideoResult(video_id=video.video_id, source=source)
        result.unknown_queries = [q for q, ok in zip(queries.queries, queries.known) if not ok]
        result.grounding = self.analyse(
            video, queries, settings, timings, on_step, ground_truth, result.notes
        )
        begin = time.perf_counter()
        result.prediction = write_video(result.grounding, out)
        name = safe_name(video.video_id)
        result.files = {"json": f"{name}.json", "heatmaps": f"{name}.heatmaps.npz"}
        timings.add("spatial", time.perf_counter() - begin)
        if settings.viz:
            begin = time.perf_counter()
            files, notes = visualise(result.grounding, video.path, out, on_step, ground_truth)
            result.files.update(files)
            result.notes.extend(notes)
            timings.add("viz", time.perf_counter() - begin)
        return result

    def analyse(
        self,
        video: VideoInput,
        queries: QueryEmbeddings,
        settings: GroundSettings,
        timings: Timings | None = None,
        on_step: Callable[[str, int, int], None] | None = None,
        ground_truth: Sequence | None = None,
        notes: list[str] | None = None,
    ) -> VideoGrounding:
        """When and where in one video, in memory (no file written).

        ``notes`` receives what the run leaves out (ground-truth segments whose label is no
        query, with ``settings.trimmed``). Raises UserError (VideoError) when the video cannot
        be read.
        """
        timings = timings or Timings()
        step = on_step or (lambda stage, done, total: None)
        fps = float(settings.fps or self.fps)
        times, global_feats, grid_feats, width, height, duration = self._features(
            video, fps, settings, timings, step
        )
        if self.config.center_video:
            global_mean, grid_mean = video_means(global_feats, grid_feats)
            global_feats = global_feats - torch.from_numpy(global_mean)
            grid_feats = grid_feats - torch.from_numpy(grid_mean)

        begin = time.perf_counter()
        with torch.no_grad():
            frames = self.model.frame_embeddings(global_feats.to(self.device)).float().cpu()
        similarity = (frames @ queries.sentence.T).numpy().astype(np.float32)
        if settings.trimmed:
            spans = _truth_spans(queries, ground_truth or (), notes if notes is not None else [])
            detection = given_segments(similarity, times, spans)
        else:
            detection = detect(
                similarity, times, tau=self.threshold(settings), smooth=settings.smooth,
                allowed=np.array(queries.known, dtype=bool),
            )
        timings.add("temporal", time.perf_counter() - begin)

        begin = time.perf_counter()
        gh, gw = self.grid
        count = len(times)
        cells = np.zeros((count, gh, gw), dtype=np.float32)
        locations: list[FrameLocation | None] = [None] * count
        segments = detection.segments
        for done, segment in enumerate(segments):
            step("spatial", done, len(segments))
            span = slice(segment.first, segment.last + 1)
            heat = self.model.heatmaps(
                grid_feats[span].float(),
                queries.words[segment.query],
                queries.mask[segment.query],
                mode=settings.heatmap,
                query=queries.sentence[segment.query],
            )
            cells[span] = heat.reshape(-1, gh, gw).numpy()
            found = locate(cells[span], width, height, threshold=settings.mask_threshold)
            locations[span] = found
        step("spatial", len(segments), len(segments))
        timings.add("spatial", time.perf_counter() - begin)
        return VideoGrounding(
            video_id=video.video_id,
            width=width,
            height=height,
            fps=fps,
            duration=duration,
            queries=list(queries.queries),
            times=np.asarray(times, dtype=np.float32),
            similarity=similarity,
            detection=detection,
            cells=cells,
            locations=locations,
        )

    # ------------------------------------------------------------------ internals

    def _features(self, video, fps, settings, timings, step):
        """(times [F] float64, global [F, Dv], grid [F, N, Dv], width, height, duration)."""
        stored = self.store is not None and video.video_id in self.store
        same_rate = abs(fps - float(self.store.config.fps)) < 1e-9 if self.store is not None else False
        if stored and (same_rate or video.path is None):
            begin = time.perf_counter()
            features = self.store.load(video.video_id)
            times = np.asarray(features.frame_times, dtype=np.float64)
            global_feats = torch.from_numpy(np.asarray(features.global_feats, dtype=np.float32))
            grid_feats = torch.from_numpy(np.asarray(features.grid_feats, dtype=np.float32))
            timings.add("features", time.perf_counter() - begin)
            return times, global_feats, grid_feats, features.width, features.height, features.duration
        if video.path is None:
            raise UserError(f"{video.video_id}: not in the feature store at another fps ({fps})")
        from stg_cli.features.encode import encode_frames
        from stg_cli.video import iter_clips, probe

        backbone = self.backbone()
        spec = backbone.spec
        clip_fps = spec.clip_fps if spec.clip_len > 1 else fps
        info = probe(video.path)
        expected = int(info.duration * fps) + 1 if info.duration else None
        times, globals_, grids = [], [], []
        begin = time.perf_counter()
        clips = iter_clips(
            video.path, fps, tuple(spec.input_size), spec.clip_len, clip_fps,
            batch_size=settings.batch_size,
        )
        done = 0
        for info, batch_times, _, frames in clips:
            timings.add("decode", time.perf_counter() - begin)
            begin = time.perf_counter()
            global_feats, grid_feats = encode_frames(backbone, frames, settings.batch_size)
            times.append(batch_times)
            globals_.append(global_feats.float())
            grids.append(grid_feats.float())
            done += len(batch_times)
            timings.add("features", time.perf_counter() - begin)
            step("frames", done, max(expected or done, done))
            begin = time.perf_counter()
        timings.add("decode", time.perf_counter() - begin)
        if not times:
            count = 0
            times_array = np.zeros(0)
            global_all = torch.zeros(0, spec.dim)
            grid_all = torch.zeros(0, spec.num_cells, spec.dim)
        else:
            times_array = np.concatenate(times).astype(np.float64)
            global_all, grid_all = torch.cat(globals_), torch.cat(grids)
            count = len(times_array)
        last = float(times_array[-1]) + 1.0 / fps if count else 0.0
        duration = float(info.duration) if info.duration else last
        return times_array, global_all, grid_all, int(info.width), int(info.height), duration

    def _check_store(self, store) -> None:
        expected = self.store_config.get("fingerprint")
        if expected and store.config.fingerprint != expected:
            raise UserError(
                f"the feature store {store.root} (fingerprint {store.config.fingerprint}) is not "
                f"the kind the model was trained on (fingerprint {expected})"
            )

    def _text_encoder(self):
        from stg_cli.backbones import load_text, load_text_from

        expected = self.store_config.get("text_fingerprint")
        places = [self.checkpoint / "text_encoder", self.checkpoint / "export" / "text_encoder"]
        if self.checkpoint.name == "export" or (self.checkpoint / "config.json").is_file():
            places.append(self.checkpoint.parent / "text_encoder")
        for place in places:
            if (place / "text_encoder.json").is_file():
                encoder = load_text_from(place, device=str(self.device))
                if not expected or encoder.fingerprint == expected:
                    return encoder
        if self.store is not None:
            return self.store.text_encoder(device=str(self.device))
        name = self.store_config.get("text")
        if name and name != "word2vec":
            try:
                encoder = load_text(name, self.store_config.get("text_weights"), device=str(self.device))
            except UserError:
                encoder = None
            if encoder is not None and (not expected or encoder.fingerprint == expected):
                return encoder
        raise UserError(
            f"the text encoder of {self.checkpoint} ({name or 'unknown'}) is not saved with it; "
            "pass --features FEATS, the feature store it was trained on"
        )


def load_truth_segments(path: Path) -> dict[str, list]:
    """Ground-truth segments per video from ``ground_seg.json`` / ``seg.json`` (or their folder).

    Returns ``{video: [stg_cli.viz.TruthSegment]}``, for the timeline and trimmed grounding.
    Raises UserError when the file is missing or malformed.
    """
    from stg_cli.metrics.annotations import load_ground_seg
    from stg_cli.viz import TruthSegment

    path = Path(path)
    if path.is_dir():
        candidates = [path / "ground_seg.json", path / "seg.json"]
        path = next((item for item in candidates if item.is_file()), candidates[0])
    segments = load_ground_seg(path)
    return {
        video: [TruthSegment(s.label or "", float(s.start), float(s.end)) for s in items]
        for video, items in segments.items()
    }


def _truth_spans(
    queries: QueryEmbeddings, truth: Sequence, notes: list[str]
) -> list[tuple[int, float, float]]:
    """(query column, start, end) of each ground-truth segment whose label is one of the queries.

    Labels match as given, else after text normalisation; a segment of another label is left
    out and noted in ``notes``.
    """
    from stg_cli.text.normalize import normalize_text

    columns = {query: index for index, query in enumerate(queries.queries)}
    normalised = {normalize_text(query): index for index, query in enumerate(queries.queries)}
    spans, unmatched = [], set()
    for segment in truth:
        column = columns.get(segment.label, normalised.get(normalize_text(segment.label)))
        if column is None:
            unmatched.add(segment.label)
        else:
            spans.append((column, float(segment.start), float(segment.end)))
    if not truth:
        notes.append("no ground-truth segment for this video: nothing to ground")
    if unmatched:
        notes.append(
            "ground-truth segments left out, their label is not a query: " + ", ".join(sorted(unmatched))
        )
    return spans


def visualise(
    grounding: VideoGrounding,
    video_path: Path | None,
    out: Path,
    on_step: Callable[[str, int, int], None] | None = None,
    ground_truth: Sequence | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Writes ``<name>.timeline.png`` and, from the video file, ``<name>.overlay.mp4`` into
    ``out``; returns the files written (kind → name) and notes on what was not.

    The overlay has the video's own frame rate (at most :data:`MAX_OVERLAY_FPS`) and duration;
    each frame shows the latest analysed frame's predictions (held, not interpolated).
    """
    from stg_cli.viz import plot_timeline, render_overlay

    name = safe_name(grounding.video_id)
    plot_timeline(grounding, out / f"{name}.timeline.png", ground_truth=ground_truth)
    files = {"timeline": f"{name}.timeline.png"}
    if video_path is None:
        return files, ["no overlay video: the video file was not given"]
    if len(grounding.times) == 0:
        return files, ["no overlay video: no frame was decoded"]
    from stg_cli.video import probe

    source_fps = probe(video_path).fps
    fps = min(source_fps, MAX_OVERLAY_FPS) if source_fps else grounding.fps
    total = max(int(grounding.duration * fps), 1)
    counter = {"done": 0}
    step = on_step or (lambda stage, done, total: None)

    def on_frame() -> None:
        counter["done"] += 1
        step("overlay", counter["done"], max(total, counter["done"]))

    render_overlay(grounding, _display_frames(video_path, fps), out / f"{name}.overlay.mp4",
                   on_frame=on_frame, fps=fps)
    files["overlay"] = f"{name}.overlay.mp4"
    return files, []


def _display_frames(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """``(time, frame uint8 [H, W, 3])`` at display size, on the same ``k / fps`` grid."""
    from stg_cli.video import iter_clips

    for _, times, _, frames in iter_clips(path, fps, None, 1, fps, batch_size=8):
        for time_value, frame in zip(times.tolist(), frames[:, 0]):
            yield time_value, frame


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``."""
    choice = (device or "auto").strip().lower()
    if choice not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; choose from auto, cpu, cuda")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to this torch")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def check_workers(workers: int) -> int:
    """``workers`` if it is a valid number of worker processes (≥ 0).

    Raises:
        UserError: otherwise.
    """
    if workers < 0:
        raise UserError(f"--workers must be 0 (this process) or more, got {workers}")
    return workers


class GroundingInterrupted(KeyboardInterrupt):
    """Ctrl-C while grounding, after ``predictions.json`` was written for the videos finished
    before it: their ``results`` (in the order of the inputs), the ``timings`` and how many
    videos were asked for (``total``)."""

    def __init__(self, results: list[VideoResult], timings: Timings, total: int) -> None:
        super().__init__("interrupted")
        self.results = results
        self.timings = timings
        self.total = total


def ground_videos(
    grounder: Grounder,
    videos: Sequence[VideoInput],
    query_set: QuerySet,
    settings: GroundSettings,
    out: Path,
    on_video: Callable[[int, int, str], None] | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
    ground_truth: dict | None = None,
    workers: int = 0,
) -> tuple[list[VideoResult], Timings]:
    """Grounds every video; a video that fails is recorded (``error``) and the rest go on.

    ``workers`` = 0 grounds in this process: ``on_video(index, total, video_id)`` before each
    video and ``on_step`` inside it. W ≥ 1 grounds in W processes (see the module docstring):
    ``on_video(done, total, video_id)`` as each video finishes, and no ``on_step``. Either way
    ``on_video(total, total, "")`` comes last, results are in the order of ``videos`` and timings
    are summed over them. Writes ``predictions.json`` for the videos that succeeded; on Ctrl-C
    for those that succeeded before it, then raises :class:`GroundingInterrupted`.
    """
    from stg_cli.ground.output import write_combined

    check_workers(workers)
    out.mkdir(parents=True, exist_ok=True)
    timings = Timings()
    results: dict[int, VideoResult] = {}
    cache: dict[tuple[str, ...], QueryEmbeddings] = {}

    def embeddings(video: VideoInput) -> QueryEmbeddings:
        pool = tuple(query_set.for_video(video.video_id))
        if pool not in cache:
            cache[pool] = grounder.embed_queries(list(pool))
        return cache[pool]

    def truth(video: VideoInput) -> Sequence | None:
        return (ground_truth or {}).get(video.video_id)

    try:
        if workers == 0:
            for index, video in enumerate(videos):
                if on_video is not None:
                    on_video(index, len(videos), video.video_id)
                try:
                    queries = embeddings(video)
                    results[index] = grounder.ground(
                        video, queries, settings, out, timings, on_step, truth(video)
                    )
                except VIDEO_ERRORS as error:
                    results[index] = _failed(video, error)
        else:
            jobs: list[_Job] = []
            done = 0
            for index, video in enumerate(videos):
                try:
                    jobs.append(_Job(index, video, embeddings(video), truth(video)))
                except VIDEO_ERRORS as error:
                    results[index] = _failed(video, error)
                    done += 1
                    if on_video is not None:
                        on_video(done, len(videos), video.video_id)

            def finish(index: int, result: VideoResult, seconds: Timings) -> None:
                nonlocal done
                results[index] = result
                for stage, value in seconds.seconds.items():
                    timings.add(stage, value)
                done += 1
                if on_video is not None:
                    on_video(done, len(videos), result.video_id)

            _ground_in_workers(grounder, jobs, settings, out, workers, finish)
    except KeyboardInterrupt:
        finished = [results[index] for index in sorted(results)]
        write_combined({r.video_id: r.prediction for r in finished if r.prediction is not None}, out)
        raise GroundingInterrupted(finished, timings, len(videos)) from None
    if on_video is not None:
        on_video(len(videos), len(videos), "")
    ordered = [results[index] for index in range(len(videos))]
    write_combined({r.video_id: r.prediction for r in ordered if r.prediction is not None}, out)
    return ordered, timings


def _failed(video: VideoInput, error: BaseException | str) -> VideoResult:
    """The result of a video that could not be grounded."""
    source = str(video.path) if video.path is not None else video.video_id
    text = error if isinstance(error, str) else error_text(error)
    return VideoResult(video_id=video.video_id, source=source, error=text)


@dataclass(frozen=True)
class _Job:
    """One video for a worker: its position in the run, its encoded queries, its ground truth."""

    index: int
    video: VideoInput
    queries: QueryEmbeddings
    truth: Sequence | None


# the Grounder of this worker process, by (checkpoint, features, device)
_WORKER_GROUNDERS: dict[tuple[str, str | None, str], Grounder] = {}


def _start_worker(threads: int) -> None:
    """Worker initialiser: Ctrl-C left to the main process, this worker's share of the cores."""
    ignore_interrupts()
    torch.set_num_threads(threads)


def _ground_in_worker(
    model: tuple[str, str | None, str], job: _Job, settings: GroundSettings, out: Path
) -> tuple[VideoResult, Timings]:
    """Worker job: grounds one video with this process's Grounder (loaded on the first job)."""
    timings = Timings()
    try:
        if model not in _WORKER_GROUNDERS:
            checkpoint, features, device = model
            _WORKER_GROUNDERS[model] = Grounder(
                Path(checkpoint), None if features is None else Path(features), device
            )
        grounder = _WORKER_GROUNDERS[model]
        result = grounder.ground(job.video, job.queries, settings, out, timings, None, job.truth)
    except VIDEO_ERRORS as error:
        result = _failed(job.video, error)
    return result, timings


def _ground_in_workers(
    grounder: Grounder,
    jobs: Sequence[_Job],
    settings: GroundSettings,
    out: Path,
    workers: int,
    finish: Callable[[int, VideoResult, Timings], None],
) -> None:
    """Grounds ``jobs`` in ``workers`` spawned processes, ``finish`` called as each one ends.

    At most ``workers`` jobs are in flight, so the jobs lost with a dead worker are the ones it
    or its siblings were running; they are redone one at a time in a fresh pool.
    """
    model = (
        str(grounder.checkpoint),
        str(grounder.store.root) if grounder.store is not None else None,
        str(grounder.device),
    )
    # spawn: workers run torch, which must not inherit this process's threads (fork)
    context = multiprocessing.get_context("spawn")

    def new_pool() -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(threads_per_worker(workers),),
        )

    queue: deque[_Job] = deque(jobs)
    suspects: deque[_Job] = deque()
    pending: dict[futures.Future, tuple[_Job, bool]] = {}
    pool = new_pool()
    try:
        while queue or suspects or pending:
            capacity = 1 if suspects else workers
            while len(pending) < capacity and (suspects or queue):
                alone = bool(suspects)
                source = suspects if alone else queue
                job = source.popleft()
                try:
                    with interrupts_ignored():
                        future = pool.submit(_ground_in_worker, model, job, settings, out)
                except futures.process.BrokenProcessPool:  # a worker died: seen below in pending
                    source.appendleft(job)
                    break
                pending[future] = (job, alone)
            if not pending:  # the pool broke with nothing in flight (an idle worker was killed)
                stop(pool)
                pool = new_pool()
                continue
            ready, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
            lost: list[tuple[_Job, bool]] = []
            for future in ready:
                job, alone = pending.pop(future)
                try:
                    result, seconds = future.result()
                except futures.process.BrokenProcessPool:
                    lost.append((job, alone))
                    continue
                finish(job.index, result, seconds)
            if lost:
                lost.extend(pending.values())
                pending.clear()
                stop(pool)
                pool = new_pool()
                for job, alone in lost:
                    if alone:
                        message = "the grounding process died (out of memory?)"
                        finish(job.index, _failed(job.video, message), Timings())
                    else:
                        suspects.append(job)
    except KeyboardInterrupt:
        for future, (job, _) in pending.items():  # done while the interrupt came in: kept
            if future.done() and not future.cancelled() and future.exception() is None:
                finish(job.index, *future.result())
        stop(pool)
        raise
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=True)


def query_counts(results: Sequence[VideoResult]) -> dict[str, dict]:
    """Per query over the successful videos: videos with a segment, segments, seconds, mean score.

    Seconds count the detected frames (frames / fps).
    """
    counts: dict[str, dict] = {}
    for result in results:
        if result.grounding is None:
            continue
        grounding = result.grounding
        for query in grounding.queries:
            counts.setdefault(query, {"videos": 0, "segments": 0, "seconds": 0.0, "score_sum": 0.0})
        seen: set[str] = set()
        for segment in grounding.detection.segments:
            query = grounding.queries[segment.query]
            entry = counts[query]
            entry["segments"] += 1
            entry["seconds"] += (segment.last - segment.first + 1) / grounding.fps
            entry["score_sum"] += segment.score
            seen.add(query)
        for query in seen:
            counts[query]["videos"] += 1
    return {
        query: {
            "videos": entry["videos"],
            "segments": entry["segments"],
            "seconds": round(entry["seconds"], 3),
            "mean_score": round(entry["score_sum"] / entry["segments"], 4) if entry["segments"] else None,
        }
        for query, entry in counts.items()
    }


def run_summary(results: Sequence[VideoResult], timings: Timings, out: Path) -> dict:
    """The JSON summary of a run (``stg ground --json``): videos, queries, failures, timings."""
    videos = []
    for result in results:
        entry: dict = {"video": result.video_id, "source": result.source}
        if result.error is not None:
            entry["error"] = result.error
        else:
            grounding = result.grounding
            entry.update(
                frames=len(grounding.times),
                duration=grounding.duration,
                segments=result.prediction["segments"],
                files={kind: str(out / name) for kind, name in result.files.items()},
                unknown_queries=result.unknown_queries,
                notes=result.notes,
            )
        videos.append(entry)
    grounded = [r for r in results if r.error is None]
    return {
        "out": str(out),
        "predictions": str(out / "predictions.json"),
        "grounded": len(grounded),
        "failed": len(results) - len(grounded),
        "videos": videos,
        "queries": query_counts(results),
        "seconds": {stage: round(value, 3) for stage, value in timings.seconds.items()},
    }
