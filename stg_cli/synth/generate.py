"""``generate``: plans, renders and writes the whole synthetic benchmark into a folder.

Layout of ``out``::

    synth.json                       config, seed, vocabulary, counts and every video's plan
    train/videos/<vid>.mp4           h264 (libx264, yuv420p)
    train/captions.json              HowTo100M style {vid: {"start", "end", "text"}}
    train/captions/<vid>.csv         start,end,text
    train/corpus.txt                 extra narration-like sentences, one a line (word vectors)
    test/videos/<vid>.mp4, test/captions.json, test/captions/<vid>.csv
    test/annotations/                GoundingYouTubeBox.json, box_anno.json, ground_seg.json,
                                     seg.json, vid2step.json, id2wh.json, id2wh_new.json,
                                     distractors.json (the unnarrated distractor actions)
    test/queries.txt                 every test query, one a line
    preview.png                      (with preview=True) test frames with their boxes

Everything is built in a hidden sibling folder and renamed to ``out`` at the end, so ``out`` is
either the previous content or the complete new benchmark. Videos are rendered by ``workers``
processes at once (each video depends on its plan alone, so the bytes do not depend on it).
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import stg_cli
from stg_cli import files
from stg_cli.errors import UserError
from stg_cli.processes import ignore_interrupts, stop, threads_per_worker
from stg_cli.synth import annotations
from stg_cli.synth.config import Difficulty, SynthConfig
from stg_cli.synth.preview import contact_sheet
from stg_cli.synth.render import VideoRenderer, render_to_mp4
from stg_cli.synth.script import (
    FOLLOWUP_MIN_SECONDS,
    FOLLOWUP_PROBABILITY,
    WORDS_PER_SECOND,
    VideoPlan,
    corpus,
    plan_video,
    vocabulary,
)
from stg_cli.synth.world import query_text

FORMAT = "stg-synth/2"

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate`` wrote and how long rendering took (``frames_per_second`` counts
    rendered and encoded frames per wall-clock second)."""

    out: Path
    train_videos: int
    test_videos: int
    frames: int
    video_seconds: int
    actions: int
    boxes: int
    captions: int
    test_queries: int
    distractor_actions: int
    idle_motions: int
    seconds: float
    frames_per_second: float
    preview: Path | None = None
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "train_videos": self.train_videos,
            "test_videos": self.test_videos,
            "frames": self.frames,
            "video_seconds": self.video_seconds,
            "actions": self.actions,
            "boxes": self.boxes,
            "captions": self.captions,
            "test_queries": self.test_queries,
            "distractor_actions": self.distractor_actions,
            "idle_motions": self.idle_motions,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 1),
            "preview": str(self.preview) if self.preview else None,
            "config": self.config,
        }


def plan_all(config: SynthConfig) -> tuple[list[VideoPlan], list[VideoPlan]]:
    """The train and test plans of ``config`` (no rendering)."""
    config = config.validated()
    taken: set[str] = set()
    splits = []
    for split, count in (("train", config.train_videos), ("test", config.test_videos)):
        plans = []
        for index in range(count):
            plan = plan_video(config, split, index, taken)
            taken.add(plan.video_id)
            plans.append(plan)
        splits.append(plans)
    return splits[0], splits[1]


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuses a non-empty ``out`` unless ``overwrite``, and even then one that is not a
    benchmark written by ``stg synth`` (no ``synth.json``), so nothing else gets deleted."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out} is not empty (use --overwrite to replace a synth benchmark)")
        if not (out / "synth.json").is_file():
            raise UserError(f"{out} is not empty and holds no synth.json: refusing to replace it")


def render_video(
    plan: VideoPlan, difficulty: Difficulty, path: Path, crf: int, preset: str, threads: int = 0
) -> tuple[dict, dict]:
    """Renders and encodes one video to ``path``; for a test video returns its boxes
    ``{second: box | None}`` over the step's seconds and its distractors' boxes
    ``{second: [(Distractor, box | None)]}`` over every second (empty dicts for train)."""
    renderer = VideoRenderer(plan, difficulty)
    render_to_mp4(renderer, path, crf, preset, threads=threads)
    if plan.split != "test":
        return {}, {}
    boxes = {
        second: renderer.box(second)
        for action in plan.actions
        for second in range(action.start, action.end + 1)
    }
    return boxes, {second: renderer.distractor_boxes(second) for second in range(plan.duration)}


def _render_all(
    plans: list[VideoPlan], config: SynthConfig, work: Path, workers: int, progress: Progress | None
) -> tuple[dict, dict]:
    """Every video of ``plans`` into ``work/<split>/videos``; the test boxes by video."""
    total = sum(plan.num_frames for plan in plans)
    boxes, distractor_boxes, done = {}, {}, 0
    for split in ("train", "test"):
        (work / split / "videos").mkdir(parents=True, exist_ok=True)

    def finish(plan: VideoPlan, result: tuple[dict, dict]) -> None:
        nonlocal done
        if plan.split == "test":
            boxes[plan.video_id], distractor_boxes[plan.video_id] = result
        done += plan.num_frames
        if progress is not None:
            progress(done, total, plan.video_id)

    def job(plan: VideoPlan) -> tuple:
        path = work / plan.split / "videos" / f"{plan.video_id}.mp4"
        return (
            plan,
            config.difficulty_settings,
            path,
            config.crf,
            config.x264_preset,
            threads_per_worker(workers),
        )

    if workers <= 1:
        for plan in plans:
            finish(plan, render_video(*job(plan)))
        return boxes, distractor_boxes
    # fork: workers only run numpy, Pillow and PyAV, and start without re-importing stg
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = futures.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=ignore_interrupts)
    try:
        running = {pool.submit(render_video, *job(plan)): plan for plan in plans}
        for future in futures.as_completed(running):
            finish(running[future], future.result())
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=True)
    return boxes, distractor_boxes


def generate(
    out: Path,
    config: SynthConfig,
    progress: Progress | None = None,
    overwrite: bool = False,
    preview: bool = False,
    workers: int | None = None,
) -> SynthSummary:
    """Renders the benchmark of ``config`` into ``out``; see the module docstring for the
    layout. ``progress(done_frames, total_frames, video_id)`` is called as videos are encoded.
    ``workers``: rendering processes (None: one per core)."""
    out = Path(out)
    config = config.validated()
    check_destination(out, overwrite)
    train, test = plan_all(config)
    total = sum(plan.num_frames for plan in train + test)
    target = out.resolve()  # "." has no name to build the sibling folders from
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    try:
        count = (os.cpu_count() or 1) if workers is None else workers
        boxes, distractor_boxes = _render_all(
            train + test, config, work, max(1, min(count, len(train + test))), progress
        )
        seconds = time.perf_counter() - started
        for split, plans in (("train", train), ("test", test)):
            files.write_text(work / split / "captions.json", annotations.captions_json(plans))
            for plan in plans:
                files.write_text(
                    work / split / "captions" / f"{plan.video_id}.csv", annotations.captions_csv(plan)
                )
        files.write_text(
            work / "train" / "corpus.txt", "\n".join(corpus(config, config.corpus_sentences)) + "\n"
        )
        extra_queries = config.difficulty_settings.extra_queries
        for name, text in annotations.ground_truth_files(
            test, boxes, config.annotation_size, extra_queries, config.seed, distractor_boxes
        ).items():
            files.write_text(work / "test" / "annotations" / name, text)
        queries = _unique(action.query for plan in test for action in plan.actions)
        files.write_text(work / "test" / "queries.txt", "".join(q + "\n" for q in queries))
        summary_counts = _counts(train, test)
        files.write_text(
            work / "synth.json", json.dumps(_manifest(config, train, test, summary_counts), indent=1) + "\n"
        )
        preview_path = None
        if preview and test:
            contact_sheet(work, work / "preview.png")
            preview_path = out / "preview.png"
        _swap(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return SynthSummary(
        out=out,
        train_videos=len(train),
        test_videos=len(test),
        frames=total,
        video_seconds=summary_counts["video_seconds"],
        actions=summary_counts["actions"],
        boxes=summary_counts["boxes"],
        captions=summary_counts["captions"],
        test_queries=len(queries),
        distractor_actions=summary_counts["distractor_actions"],
        idle_motions=summary_counts["idle_motions"],
        seconds=seconds,
        frames_per_second=total / seconds if seconds > 0 else 0.0,
        preview=preview_path,
        config=config.to_dict(),
    )


def _swap(work: Path, out: Path) -> None:
    if out.exists():
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, trash)
        os.replace(work, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work, out)


def _unique(items) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _counts(train: list[VideoPlan], test: list[VideoPlan]) -> dict:
    plans = train + test
    return {
        "train_videos": len(train),
        "test_videos": len(test),
        "video_seconds": sum(plan.duration for plan in plans),
        "frames": sum(plan.num_frames for plan in plans),
        "actions": sum(len(plan.actions) for plan in plans),
        "narrated_actions": sum(1 for plan in plans for c in plan.captions if c.kind == "narration"),
        "followups": sum(1 for plan in plans for c in plan.captions if c.kind == "followup"),
        "captions": sum(len(plan.captions) for plan in plans),
        "boxes": sum(a.end - a.start + 1 for plan in test for a in plan.actions),
        "distractor_actions": sum(len(plan.distractors) for plan in plans),
        "idle_motions": sum(len(plan.idle) for plan in plans),
        "test_actions": sum(len(plan.actions) for plan in test),
        "mentions": sum(len(plan.mentions) for plan in test),
    }


def _manifest(config: SynthConfig, train: list, test: list, counts: dict) -> dict:
    nouns, verbs = vocabulary(config)
    difficulty = config.difficulty_settings
    return {
        "format": FORMAT,
        "stg_version": stg_cli.__version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "difficulty": {
            "name": difficulty.name,
            "narration_offset_range": [-difficulty.max_offset, difficulty.max_offset],
            "narration_seconds_per_word": 1.0 / WORDS_PER_SECOND,
            "narration_duration_jitter": difficulty.duration_jitter,
            "followup": {
                "min_action_seconds": FOLLOWUP_MIN_SECONDS,
                "probability": FOLLOWUP_PROBABILITY,
                "start_range": "action start + 2 s .. action end, shifted by ±max_offset / 2",
            },
            "unnarrated_probability": difficulty.unnarrated,
            "fillers_per_minute": difficulty.fillers_per_minute,
            "synonym_probability": difficulty.synonym,
            "drop_word_probability": difficulty.drop_word,
            "extra_queries": difficulty.extra_queries,
            "mention_only_probability": difficulty.mention_only,
            "pixel_noise_std": difficulty.noise,
            "camera_jitter_fraction": difficulty.jitter,
            "temporal_noise": difficulty.temporal_noise,
            "distractor_actions": difficulty.distractor_actions,
            "idle_motions": difficulty.idle_motions,
            "camera_pan_fraction": difficulty.pan,
            "camera_zoom": difficulty.zoom,
            "lighting_amplitude": difficulty.lighting,
        },
        "vocabulary": {
            "nouns": nouns,
            "verbs": verbs,
            "queries": [query_text(v, n) for v in verbs for n in nouns],
        },
        "counts": counts,
        "videos": [plan.to_dict() for plan in train + test],
    }
