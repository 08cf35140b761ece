"""``stg extract`` as a library: videos + captions → a feature store (see :mod:`.store`).

Steps: list the videos (a video's id is its file name without suffix), load the captions of
those videos, pick this process's shard, load the visual backbone and the text encoder, open or
create the store (refusing a store made with another configuration), then per video of the
shard: skip it when already stored, when it has no usable caption; otherwise decode, encode,
write atomically. A video that fails (unreadable, truncated, no video stream, non-finite
features) is recorded under ``failures/`` and the run goes on.

Text encoder: ``--text clip`` with ``--backbone clip-vit-b32`` (and ``s3d-milnce`` with
``s3d-milnce``) reads the text tower from ``--weights`` unless ``--text-weights`` is given. An
existing store's ``text_encoder/`` is reused when it is the requested kind, so
a resumed run encodes with the same vocabulary. Otherwise ``--text word2vec`` without
``--text-weights`` trains word2vec on the captions of every video of the run (all shards: the
training is deterministic, so every shard trains the same vectors), and the other encoders load
their weights; the encoder is then saved into ``FEATS/text_encoder/``.

Sharding: the videos sorted by id are dealt round-robin, video i going to shard i mod n; every
shard must see the same video list. ``--shard i/n`` (0 ≤ i < n) or, under torchrun, the
RANK/WORLD_SIZE environment variables choose the shard. Shards may run at once on many machines
writing into one store on a shared file system: they write disjoint videos and failure records,
each keeps its progress in its own record (``shards/<i>-of-<n>.json``,
:mod:`stg_cli.features.status`), and the manifest is rebuilt from what is on disk under a lock.
A shard rerun skips its finished videos and retries its failed ones.

Layout: ``videos`` (default) leaves a folder per video; ``packed`` moves this shard's videos
into packs (:func:`stg_cli.features.packing.pack_store`) every ``videos_per_pack`` videos and
at the end; an interrupted run leaves its last videos in folders, which the next run packs.

Workers: with W ≥ 1, W processes decode videos ahead (at most W + 1 videos in flight) into raw
frame files under ``FEATS/tmp/`` that the main process memory-maps while it runs the backbone;
with W = 0 the main process decodes and encodes batch by batch. Either way memory holds about one
batch of frames, and features do not depend on W.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import dataclasses
import math
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stg_cli import files
from stg_cli.backbones import TEXT_ENCODERS, load_text, load_text_from, load_visual, train_word2vec
from stg_cli.defaults import STORE_LAYOUTS, VIDEOS_PER_PACK
from stg_cli.errors import UserError, error_text
from stg_cli.features.encode import encode_frames, encode_video
from stg_cli.features.packing import pack_store
from stg_cli.features.status import new_shard_progress, write_shard_progress
from stg_cli.features.store import StoreConfig, StoreWriter
from stg_cli.files import safe_name
from stg_cli.processes import ignore_interrupts, process_alive, run_in_pool, threads_per_worker
from stg_cli.text.captions import Caption, CaptionStats, read_captions
from stg_cli.video import VideoError, iter_clips
from stg_cli.video_files import VIDEO_SUFFIXES, list_folder


@dataclass
class ExtractOptions:
    backbone: str = "tiny"
    text: str = "word2vec"
    weights: Path | None = None
    text_weights: Path | None = None
    fps: float | None = None
    shard: tuple[int, int] | None = None
    workers: int = 0
    device: str = "cpu"  # auto | cpu | cuda[:N] (stg_cli.devices)
    batch_size: int = 32
    word2vec_dim: int = 300
    seed: int = 0
    layout: str = "videos"  # videos | packed (stg_cli.defaults.STORE_LAYOUTS)
    videos_per_pack: int = VIDEOS_PER_PACK


@dataclass
class VideoOutcome:
    """What happened to one video: done | stored (by an earlier run) | no_captions | failed."""

    video_id: str
    path: str
    status: str
    reason: str = ""
    frames: int = 0
    captions: int = 0
    seconds: float = 0.0


@dataclass
class ExtractSummary:
    out: str
    fingerprint: str
    shard: tuple[int, int]
    videos_found: int
    ignored_files: list[str]
    results: list[VideoOutcome]
    caption_stats: CaptionStats
    captions_without_video: int
    seconds: float
    loop_seconds: float = 0.0  # decoding + encoding + writing, without loading the backbones
    text_encoder: str = ""
    manifest_videos: int = 0
    interrupted: bool = False
    packs: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def failed(self) -> list[VideoOutcome]:
        return [result for result in self.results if result.status == "failed"]

    @property
    def frames(self) -> int:
        return sum(result.frames for result in self.results if result.status == "done")

    def to_dict(self) -> dict:
        return {
            "out": self.out,
            "fingerprint": self.fingerprint,
            "shard": list(self.shard),
            "videos_found": self.videos_found,
            "in_shard": len(self.results),
            "done": self.count("done"),
            "already_stored": self.count("stored"),
            "no_captions": self.count("no_captions"),
            "failed": self.count("failed"),
            "failures": [{"video": r.video_id, "path": r.path, "reason": r.reason} for r in self.failed],
            "skipped_no_captions": [r.video_id for r in self.results if r.status == "no_captions"],
            "ignored_files": self.ignored_files,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "extract_seconds": round(self.loop_seconds, 3),
            "frames_per_second": (
                round(self.frames / self.loop_seconds, 2) if self.loop_seconds > 0 else None
            ),
            "captions": self.caption_stats.to_dict(),
            "captions_without_video": self.captions_without_video,
            "text_encoder": self.text_encoder,
            "store_videos": self.manifest_videos,
            "packs_written": self.packs,
            "interrupted": self.interrupted,
        }


class ExtractInterrupted(KeyboardInterrupt):
    """Ctrl-C during extraction, after the manifest was rebuilt: ``summary`` counts what was
    stored before it (``interrupted`` set)."""

    def __init__(self, summary: ExtractSummary) -> None:
        super().__init__("interrupted")
        self.summary = summary


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 ≤ i < n; UserError otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 ≤ i < n")
    return index, count


def shard_from_env() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) as torchrun sets them, else (0, 1)."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise UserError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world


def find_videos(
    inputs: Iterable[str | os.PathLike],
) -> tuple[dict[str, Path], list[str], list[tuple[Path, str]]]:
    """Video files of ``inputs``: folders as every command reads them
    (:func:`stg_cli.video_files.list_folder`), files as given.

    Returns ``({video_id: path}, ignored files, [(duplicate file, why)])``: a folder's visible
    files without a video suffix are ignored, and a second file with an id already seen is a
    duplicate (captions are keyed by the id; the first file keeps it).
    """
    videos: dict[str, Path] = {}
    ignored: list[str] = []
    duplicates: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            candidates, others = list_folder(path)
            ignored.extend(str(other) for other in others)
        elif path.exists():
            candidates = [path]
        else:
            raise UserError(f"video not found: {path}")
        for candidate in candidates:
            video_id = candidate.stem
            if video_id in videos:
                duplicates.append((candidate, f"duplicate video id {video_id!r} (also {videos[video_id]})"))
                continue
            videos[video_id] = candidate
    return videos, ignored, duplicates


def _text_encoder(out: Path, options: ExtractOptions, corpus: list[str]):

    if options.text not in TEXT_ENCODERS:
        raise UserError(f"unknown text encoder {options.text!r}; choose one of {', '.join(TEXT_ENCODERS)}")
    saved = out / "text_encoder"
    if saved.is_dir() and options.text_weights is None:
        encoder = load_text_from(saved, device=options.device)
        if encoder.name == options.text:
            return encoder, True
    if options.text == "word2vec" and options.text_weights is None:
        if not corpus:
            raise UserError("no caption to train word2vec on: give --text-weights or captions with text")
        return train_word2vec(corpus, dim=options.word2vec_dim, seed=options.seed), False
    return load_text(options.text, options.text_weights, device=options.device), False


def _save_text_encoder(out: Path, encoder) -> None:
    target = out / "text_encoder"
    if target.exists():
        return
    # another shard may save it first; it is the same encoder (the store's fingerprint says so)
    with contextlib.suppress(FileExistsError), files.atomic_folder(target, out / "tmp") as tmp:
        encoder.save(tmp)


def _caption_arrays(encoder, captions: list[Caption]) -> dict[str, np.ndarray]:
    features = encoder.encode([caption.text for caption in captions])
    return {
        "caption_times": np.array([[c.start, c.end] for c in captions], dtype=np.float32).reshape(-1, 2),
        "sentence": features.sentence.float().numpy(),
        "words": features.words.float().numpy(),
        "word_mask": features.mask.numpy().astype(bool),
    }


def extract(
    videos: list[str | os.PathLike],
    captions: str | os.PathLike,
    out: str | os.PathLike,
    options: ExtractOptions | None = None,
    on_start: Callable[[int], None] | None = None,
    on_video: Callable[[VideoOutcome], None] | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> ExtractSummary:
    """Extract the features of ``videos`` into the store ``out`` (see the module docstring).

    ``on_start(n)`` gets the number of videos of this shard (duplicate files of its ids
    included), ``on_video`` each video's result, ``on_frames(n)`` the frames encoded as they go.
    On KeyboardInterrupt the manifest is rebuilt (every finished video stays) and the interrupt is
    raised again.
    """
    options = options or ExtractOptions()

    if (
        options.text_weights is None
        and options.weights is not None
        and (options.backbone, options.text) in (("clip-vit-b32", "clip"), ("s3d-milnce", "s3d-milnce"))
    ):
        # the text tower of the same checkpoint
        options = dataclasses.replace(options, text_weights=options.weights)

    if options.fps is not None and not (math.isfinite(options.fps) and options.fps > 0):
        raise UserError(f"--fps must be a positive number, got {options.fps}")
    if options.layout not in STORE_LAYOUTS:
        raise UserError(f"--layout must be one of {', '.join(STORE_LAYOUTS)}, got {options.layout!r}")
    if options.videos_per_pack < 1:
        raise UserError(f"--videos-per-pack must be >= 1, got {options.videos_per_pack}")
    started = time.perf_counter()
    out = Path(out)
    found, ignored, duplicates = find_videos(videos)
    if not found and not duplicates:
        raise UserError(
            f"no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in {', '.join(map(str, videos))}"
        )
    caption_set = read_captions(captions, video_ids=list(found))
    shard = options.shard or shard_from_env()
    ids = sorted(found)
    mine = [video_id for position, video_id in enumerate(ids) if position % shard[1] == shard[0]]

    backbone = load_visual(options.backbone, options.weights, device=options.device)
    spec = backbone.spec
    fps = float(spec.fps if options.fps is None else options.fps)
    corpus = [caption.text for video_id in ids for caption in caption_set.captions.get(video_id, [])]
    out.mkdir(parents=True, exist_ok=True)
    encoder, reused = _text_encoder(out, options, corpus)
    config = StoreConfig(
        backbone=options.backbone,
        weights=_weights_path(options.weights),
        text=options.text,
        grid=tuple(spec.grid),
        visual_dim=int(spec.dim),
        text_dim=int(encoder.dim),
        fps=fps,
        input_size=tuple(spec.input_size),
        clip_len=int(spec.clip_len),
        clip_fps=float(spec.clip_fps if spec.clip_len > 1 else fps),
        text_weights=_weights_path(options.text_weights),
        visual_fingerprint=backbone.fingerprint,
        text_fingerprint=encoder.fingerprint,
    ).with_fingerprint()
    writer = StoreWriter(out, config)
    if not reused:
        _save_text_encoder(out, encoder)

    # a duplicate file belongs to the shard of its id (whose first file that shard extracts)
    own = set(mine)
    results = [
        VideoOutcome(path.stem, str(path), "failed", why) for path, why in duplicates if path.stem in own
    ]
    in_shard = len(mine) + len(results)
    progress = new_shard_progress(shard, in_shard)
    to_pack: list[str] = []  # videos of this shard in folders, for the packed layout
    todo: list[str] = []
    for video_id in mine:
        path = str(found[video_id])
        if writer.is_done(video_id):
            results.append(VideoOutcome(video_id, path, "stored"))
            if video_id not in writer.packed:
                to_pack.append(video_id)
        elif not caption_set.captions.get(video_id):
            writer.clear_failure(video_id)
            results.append(VideoOutcome(video_id, path, "no_captions", "no usable caption"))
        else:
            todo.append(video_id)
    if on_start is not None:
        on_start(in_shard)
    for result in results:
        if on_video is not None:
            on_video(result)

    summary = ExtractSummary(
        out=str(out),
        fingerprint=config.fingerprint,
        shard=shard,
        videos_found=len(found) + len(duplicates),
        ignored_files=ignored,
        results=results,
        caption_stats=caption_set.stats,
        captions_without_video=0,
        seconds=0.0,
        text_encoder=f"{encoder.name} ({encoder.fingerprint}{', reused' if reused else ''})",
    )
    # the manifest is rebuilt now and then so that a killed run leaves a readable store; a
    # rebuild reads every meta.json, so it never takes more than a tenth of the time
    last_manifest, manifest_cost = time.monotonic(), 0.0
    label = f"shard-{shard[0]}-of-{shard[1]}"

    def record_progress(state: str) -> None:
        progress.state, progress.updated = state, time.time()
        for status in ("done", "stored", "failed", "no_captions"):
            setattr(progress, status, sum(result.status == status for result in results))
        write_shard_progress(out, progress)

    def pack(videos: list[str]) -> None:
        packed = pack_store(out, options.videos_per_pack, only=videos, label=label)
        summary.packs.extend(packed.packs)
        videos.clear()

    record_progress("running")

    def finish(
        video_id: str, status: str, reason: str = "", frames: int = 0, captions: int = 0, t0: float = 0.0
    ):
        nonlocal last_manifest, manifest_cost
        result = VideoOutcome(
            video_id, str(found[video_id]), status, reason, frames, captions, time.perf_counter() - t0
        )
        if status == "failed":
            writer.record_failure(video_id, str(found[video_id]), reason)
        results.append(result)
        if status == "done" and options.layout == "packed":
            to_pack.append(video_id)
            if len(to_pack) >= options.videos_per_pack:
                pack(to_pack)
        if on_video is not None:
            on_video(result)
        if time.monotonic() - last_manifest > max(30.0, 10 * manifest_cost):
            began = time.monotonic()
            writer.rebuild_manifest()
            record_progress("running")
            last_manifest = time.monotonic()
            manifest_cost = last_manifest - began

    loop_started = time.perf_counter()

    def store(video_id: str, info, times: np.ndarray, global_feats, grid_feats, t0: float) -> None:
        video_captions = caption_set.captions[video_id]
        duration = (
            info.duration
            if info.duration is not None
            else (float(times[-1]) + 1.0 / fps if len(times) else 0.0)
        )
        arrays = {
            "frame_times": np.asarray(times, dtype=np.float32),
            "global": global_feats.numpy(),
            "grid": grid_feats.numpy(),
            **_caption_arrays(encoder, video_captions),
        }
        meta = {**info.to_dict(), "duration": duration, "source": str(found[video_id]), "feature_fps": fps}
        writer.write(video_id, arrays, [c.text for c in video_captions], meta)
        finish(video_id, "done", frames=len(times), captions=len(video_captions), t0=t0)

    try:
        if options.workers <= 0:
            for video_id in todo:
                t0 = time.perf_counter()
                try:
                    encoding = encode_video(
                        found[video_id], backbone, fps=fps, batch_size=options.batch_size, on_batch=on_frames
                    )
                    store(
                        video_id,
                        encoding.info,
                        encoding.times.numpy(),
                        encoding.global_feats,
                        encoding.grid_feats,
                        t0,
                    )
                except (VideoError, ValueError, RuntimeError, OSError) as error:
                    finish(video_id, "failed", error_text(error), t0=t0)
        else:
            _run_with_workers(todo, found, spec, fps, options, backbone, store, finish, on_frames, out)
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.manifest_videos = writer.rebuild_manifest()["counts"]["videos"]
        record_progress("interrupted")
        summary.loop_seconds = time.perf_counter() - loop_started
        summary.seconds = time.perf_counter() - started
        raise ExtractInterrupted(summary) from None
    summary.loop_seconds = time.perf_counter() - loop_started
    if options.layout == "packed" and to_pack:
        pack(to_pack)
    manifest = writer.rebuild_manifest()
    summary.manifest_videos = manifest["counts"]["videos"]
    record_progress("finished")
    summary.captions_without_video = caption_set.stats.unmatched
    summary.seconds = time.perf_counter() - started
    return summary


def _weights_path(weights: Path | str | None) -> str | None:
    """An absolute path for weights given as a path (``tiny`` takes a seed instead)."""
    if weights is None:
        return None
    path = Path(weights).expanduser()
    return str(path.resolve()) if path.exists() else str(weights)


def decode_to_file(
    path: str, fps: float, size: tuple[int, int], clip_len: int, clip_fps: float, threads: int, target: str
) -> tuple:
    """Worker job: decode ``path`` batch by batch into the raw file ``target``.

    The worker holds one batch at a time and the main process memory-maps the file, so neither
    holds a whole decoded video (S3D clips of a 10-minute video are ~1.4 GB) and nothing large
    crosses the process pipe. Returns ``(info, times [U], shape of the frames array)``.
    """
    times, count, info = [], 0, None
    with open(target, "wb") as handle:
        for info, batch_times, _, frames in iter_clips(path, fps, size, clip_len, clip_fps, threads=threads):
            handle.write(np.ascontiguousarray(frames).tobytes())
            times.append(batch_times)
            count += len(frames)
    return info, np.concatenate(times), (count, clip_len, size[0], size[1], 3)


_SCRATCH_PREFIX = ".frames-"


def _remove_orphaned_scratch(folder: Path) -> None:
    """Removes the frame scratch folders (``.frames-<host>-<pid>-*``) of this host's extract
    processes that are gone (killed with SIGKILL, the machine's power cut); those of live
    processes, other shards sharing the store included, and of other hosts stay."""
    host = socket.gethostname()
    for scratch in folder.glob(f"{_SCRATCH_PREFIX}*"):
        owner, _, rest = scratch.name.removeprefix(_SCRATCH_PREFIX).rpartition("-")
        owner_host, _, pid = owner.rpartition("-")
        if owner_host == host and pid.isdigit() and rest and not process_alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


def _run_with_workers(todo, found, spec, fps, options, backbone, store, finish, on_frames, out) -> None:
    """Decode in ``options.workers`` processes, at most workers + 1 videos ahead; encode here."""
    workers = options.workers
    threads = threads_per_worker(workers)
    clip_fps = spec.clip_fps if spec.clip_len > 1 else fps
    # fork: workers only run PyAV and numpy (never torch), and start without re-importing stg
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")

    def new_pool() -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=ignore_interrupts
        )

    # decoded frames go through files here; a dot name never clashes with a video's temp folder
    _remove_orphaned_scratch(out / "tmp")
    scratch = Path(
        tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{socket.gethostname()}-{os.getpid()}-", dir=out / "tmp")
    )
    started: dict[str, float] = {}

    def frames_file(video_id: str) -> Path:
        return scratch / f"{safe_name(video_id)}.frames"

    def submit(pool: futures.ProcessPoolExecutor, video_id: str) -> futures.Future:
        started[video_id] = time.perf_counter()
        return pool.submit(
            decode_to_file,
            str(found[video_id]),
            fps,
            tuple(spec.input_size),
            spec.clip_len,
            clip_fps,
            threads,
            str(frames_file(video_id)),
        )

    def on_result(video_id: str, job: futures.Future) -> None:
        t0 = started[video_id]
        path = frames_file(video_id)
        try:
            info, times, shape = job.result()
        except (VideoError, ValueError, RuntimeError, OSError) as error:
            path.unlink(missing_ok=True)
            finish(video_id, "failed", error_text(error), t0=t0)
            return
        try:
            frames = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
            global_feats, grid_feats = encode_frames(backbone, frames, options.batch_size)
            del frames
            path.unlink(missing_ok=True)
            if on_frames is not None:
                on_frames(len(times))
            store(video_id, info, times, global_feats, grid_feats, t0)
        except (ValueError, RuntimeError, OSError) as error:
            finish(video_id, "failed", error_text(error), t0=t0)

    def on_lost(video_id: str) -> None:
        frames_file(video_id).unlink(missing_ok=True)
        finish(video_id, "failed", "the decoding process died (out of memory?)", t0=started[video_id])

    try:
        # decoding runs ahead of encoding by at most one video per worker and one more
        run_in_pool(todo, submit, new_pool, on_result, on_lost, ahead=workers + 1, in_order=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
