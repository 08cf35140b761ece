"""``stg synth``: render a narrated multi-action benchmark with ground truth in the real formats."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from stg_cli import terminal
from stg_cli.defaults import DIFFICULTY_LEVELS
from stg_cli.errors import UserError
from stg_cli.terminal import escape

if TYPE_CHECKING:
    from stg_cli.synth import SynthConfig, SynthSummary


def command(
    out: Path = typer.Argument(..., help="Folder to write the benchmark into (new or empty)."),
    videos: int | None = typer.Option(
        None, "--videos", help="Total number of videos: a fifth (at least one) go to test."
    ),
    train_videos: int | None = typer.Option(None, "--train-videos", help="Train videos."),
    test_videos: int | None = typer.Option(None, "--test-videos", help="Test videos."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same benchmark."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="The quick set (default): 24 + 6 videos, 40-60 s, 320x240, 5 fps (stg demo: 24 + 30).",
    ),
    full: bool = typer.Option(
        False, "--full", help="The larger set: 120 + 30 videos, 60-180 s, 640x480, 10 fps."
    ),
    size: str | None = typer.Option(None, "--size", help="Frame size WxH, e.g. 640x480."),
    fps: int | None = typer.Option(None, "--fps", help="Video frame rate (whole number)."),
    difficulty: str = typer.Option(
        "medium",
        "--difficulty",
        help=f"Narration, pixel noise and distracting motion: {'|'.join(DIFFICULTY_LEVELS)}.",
    ),
    distractors: int | None = typer.Option(
        None,
        "--distractors",
        help="Concurrent unnarrated distractor actions (default: the difficulty's; 0: the v1 "
        "world, without distractors, idle motion, camera motion or lighting change).",
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Rendering processes (default: one per core)."
    ),
    preview: bool = typer.Option(
        False, "--preview", help="Also write OUT/preview.png: test frames with their boxes."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it already holds a synth benchmark."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Render train/test videos, ASR-like captions and GroundingYouTube-format ground truth."""
    from stg_cli.synth import generate

    config = build_config(
        videos, train_videos, test_videos, seed, quick, full, size, fps, difficulty, distractors
    )
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    console = terminal.console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task("rendering", total=None)

        def on_progress(done: int, total: int, video: str) -> None:
            progress.update(task, completed=done, total=total, description=f"rendering {video}")

        summary = generate(out, config, on_progress, overwrite=overwrite, preview=preview, workers=workers)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    print_summary(summary, terminal.console())


def build_config(
    videos: int | None,
    train_videos: int | None,
    test_videos: int | None,
    seed: int,
    quick: bool,
    full: bool,
    size: str | None,
    fps: int | None,
    difficulty: str,
    distractors: int | None = None,
) -> SynthConfig:
    """The ``SynthConfig`` of the command's options (``UserError`` on a bad combination)."""
    from stg_cli.synth import SynthConfig

    if quick and full:
        raise UserError("--quick and --full exclude each other")
    if videos is not None and (train_videos is not None or test_videos is not None):
        raise UserError("--videos excludes --train-videos and --test-videos")
    changes: dict = {"seed": seed, "difficulty": difficulty, "distractors": distractors}
    if videos is not None:
        if videos < 1:
            raise UserError(f"--videos must be at least 1, got {videos}")
        test = max(1, round(videos / 5))
        changes.update(train_videos=videos - test, test_videos=test)
    if train_videos is not None:
        changes["train_videos"] = train_videos
    if test_videos is not None:
        changes["test_videos"] = test_videos
    if size is not None:
        changes["width"], changes["height"] = parse_size(size)
    if fps is not None:
        changes["fps"] = fps
    base = SynthConfig.full() if full else SynthConfig.quick()
    return replace(base, **changes).validated()


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` → ``(640, 480)``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise UserError(f"--size must look like 640x480, got {text!r}")
    return int(parts[0]), int(parts[1])


def print_summary(summary: SynthSummary, console: Console) -> None:
    """A table of what was written and how fast."""
    table = Table(title=f"stg synth → {escape(str(summary.out))}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    config = summary.config
    table.add_row("videos (train + test)", f"{summary.train_videos} + {summary.test_videos}")
    table.add_row("frame size, fps", f"{config['width']}x{config['height']}, {config['fps']}")
    table.add_row("video time", f"{summary.video_seconds} s ({summary.frames} frames)")
    table.add_row("actions", str(summary.actions))
    table.add_row("captions", str(summary.captions))
    table.add_row("test boxes (1 fps)", str(summary.boxes))
    table.add_row("test queries", str(summary.test_queries))
    table.add_row("distractor actions, idle motions", f"{summary.distractor_actions}, {summary.idle_motions}")
    table.add_row("difficulty, seed", f"{config['difficulty']}, {config['seed']}")
    speed = f"{summary.seconds:.1f} s ({summary.frames_per_second:.0f} frames/s)"
    table.add_row("render time", speed)
    console.print(table)
    out = escape(str(summary.out))
    console.print(f"annotations: {out}/test/annotations   queries: {out}/test/queries.txt", highlight=False)
    if summary.preview is not None:
        console.print(f"preview: {escape(str(summary.preview))}", highlight=False)
