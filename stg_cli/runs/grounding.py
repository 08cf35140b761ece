"""Grounding runs: many videos through a :class:`stg_cli.ground.pipeline.Grounder`, each one's
prediction files and pictures written, one process or several, and the run's summary.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import torch

from stg_cli.errors import UserError, error_text
from stg_cli.ground.output import prediction_names, write_combined, write_prediction
from stg_cli.ground.pipeline import Grounder, GroundSettings, QueryEmbeddings, Timings, VideoResult
from stg_cli.ground.queries import QuerySet
from stg_cli.metrics.annotations import (
    YOUCOOK_BOXES,
    YOUCOOK_SEGMENTS,
    YOUCOOK_SENTENCES,
    load_ground_seg,
    load_youcook_interactions,
)
from stg_cli.processes import ignore_interrupts, run_in_pool, threads_per_worker
from stg_cli.video_files import VideoInput
from stg_cli.viz import TruthSegment
from stg_cli.viz.draw import draw_grounding

# what grounding one video may raise without ending the run: the video is recorded as failed
VIDEO_ERRORS = (UserError, ValueError, RuntimeError, OSError, MemoryError, av.FFmpegError)


def load_truth_segments(path: Path) -> dict[str, list]:
    """Ground-truth segments per video, for the timeline and trimmed grounding.

    ``path``: ``ground_seg.json`` / ``seg.json`` (or their folder, ``ground_seg.json`` first), or
    YouCook2-Interactions' ``final_dataset_segments.pkl`` (or its folder), whose segments are
    labelled with their YouCook2 sentences from ``youcookii_annotations_trainval.json`` beside
    it. Returns ``{video: [stg_cli.viz.TruthSegment]}``. Raises UserError when the files are
    missing or malformed.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / "ground_seg.json", path / "seg.json", path / YOUCOOK_SEGMENTS]
        path = next((item for item in candidates if item.is_file()), candidates[0])
    if path.name.endswith(".pkl"):
        sentences = path.parent / YOUCOOK_SENTENCES
        if not sentences.is_file():
            raise UserError(
                f"{sentences} not found: YouCook2-Interactions segments take their queries from it"
            )
        truth = load_youcook_interactions(path.parent / YOUCOOK_BOXES, path, sentences)
        segments = truth.segments
    else:
        segments = load_ground_seg(path)
    return {
        video: [TruthSegment(s.label or "", float(s.start), float(s.end)) for s in items]
        for video, items in segments.items()
    }


def ground_video(
    grounder: Grounder,
    video: VideoInput,
    queries: QueryEmbeddings,
    settings: GroundSettings,
    out: Path,
    timings: Timings | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
    ground_truth: Sequence | None = None,
) -> VideoResult:
    """Grounds one video (:meth:`Grounder.analyse`) and writes its files into ``out``:
    ``<id>.json`` and ``<id>.heatmaps.npz``, with ``settings.viz`` also the pictures.

    ``on_step(stage, done, total)`` reports progress inside the video.
    Raises UserError (VideoError) when the video cannot be read.
    """
    timings = timings or Timings()
    source = str(video.path) if video.path is not None else f"{video.video_id} (feature store)"
    result = VideoResult(video_id=video.video_id, source=source)
    result.unknown_queries = [q for q, ok in zip(queries.queries, queries.known) if not ok]
    result.grounding = grounder.analyse(
        video, queries, settings, timings, on_step, ground_truth, result.notes
    )
    begin = time.perf_counter()
    result.prediction = write_prediction(result.grounding, out)
    result.files = prediction_names(video.video_id)
    timings.add("spatial", time.perf_counter() - begin)
    if settings.viz:
        begin = time.perf_counter()
        files, notes = draw_grounding(result.grounding, video.path, out, on_step, ground_truth)
        result.files.update(files)
        result.notes.extend(notes)
        timings.add("viz", time.perf_counter() - begin)
    return result


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
                    results[index] = ground_video(
                        grounder, video, queries, settings, out, timings, on_step, truth(video)
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
        result = ground_video(grounder, job.video, job.queries, settings, out, timings, None, job.truth)
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

    def on_result(job: _Job, future: futures.Future) -> None:
        finish(job.index, *future.result())

    def on_lost(job: _Job) -> None:
        finish(job.index, _failed(job.video, "the grounding process died (out of memory?)"), Timings())

    run_in_pool(
        jobs,
        lambda pool, job: pool.submit(_ground_in_worker, model, job, settings, out),
        new_pool,
        on_result,
        on_lost,
        ahead=workers,
        keep_done_on_interrupt=True,
    )


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
