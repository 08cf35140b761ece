"""``stg extract``: videos + captions → a feature store for ``stg train`` and ``stg ground``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from stg_cli import terminal
from stg_cli.defaults import STORE_LAYOUTS, VIDEOS_PER_PACK
from stg_cli.terminal import escape

if TYPE_CHECKING:
    from stg_cli.features.extract import ExtractSummary, VideoOutcome


def command(
    videos: list[Path] = typer.Argument(
        ..., metavar="VIDEOS...", help="Video files and/or folders of videos (id = file name without suffix)."
    ),
    captions: Path = typer.Option(
        ...,
        "--captions",
        help="HowTo100M JSON, a CSV, an SRT/WebVTT file, or a folder of per-video caption files.",
    ),
    out: Path = typer.Option(..., "--out", help="Feature store folder (created, or resumed)."),
    backbone: str = typer.Option(
        "tiny",
        "--backbone",
        help="Visual backbone: tiny, clip-vit-b32, s3d-milnce, effnet-lite0 or effnet-lite2.",
    ),
    text: str = typer.Option(
        "word2vec",
        "--text",
        help="Text encoder: word2vec (trained on the captions unless --text-weights), minilm, "
        "clip, s3d-milnce.",
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="Visual weights: a Hugging Face CLIP folder or OpenAI state dict, or s3d_howto100m.pth.",
    ),
    text_weights: Path | None = typer.Option(
        None,
        "--text-weights",
        help="Text weights: a GoogleNews-format word2vec binary, a CLIP folder, "
        "or the S3D .pth + s3d_dict.npy.",
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="Feature steps per second (default: the backbone's, 1.0)."
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="i/n: extract only shard i (0-based) of n; default RANK/WORLD_SIZE under torchrun, else 0/1.",
    ),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        help="Decoding processes running ahead of the backbone (0: decode in the main process).",
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Frames per backbone call."),
    device: str = typer.Option(
        "auto", "--device", help="auto, cpu or cuda[:N] (under torchrun: the GPU of LOCAL_RANK)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of word2vec training on the captions."),
    layout: str = typer.Option(
        "videos",
        "--layout",
        help=f"Store layout: {'|'.join(STORE_LAYOUTS)}: a folder per video, or this shard's videos "
        "moved into packs of --videos-per-pack (8 files per pack; for large corpora).",
    ),
    videos_per_pack: int = typer.Option(
        VIDEOS_PER_PACK, "--videos-per-pack", min=1, help="Videos per pack with --layout packed."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Decode VIDEOS, run the frozen backbones and write a resumable feature store to --out.

    A rerun with the same --out skips the videos already stored. Exit code 0 when every video of
    the shard was stored (or had no caption), 1 when some failed (the store is still usable;
    the failures are listed and recorded in the manifest; under torchrun failures exit 0, as a
    failing rank would stop the others), 2 for bad arguments, 130 on Ctrl-C (every video
    finished before it stays in the store).
    """
    from stg_cli.features import extract as extract_lib

    options = extract_lib.ExtractOptions(
        backbone=backbone,
        text=text,
        weights=weights,
        text_weights=text_weights,
        fps=fps,
        shard=extract_lib.parse_shard(shard) if shard is not None else None,
        workers=workers,
        device=device,
        batch_size=batch_size,
        seed=seed,
        layout=layout,
        videos_per_pack=videos_per_pack,
    )
    stderr = terminal.console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        task = progress.add_task("loading backbones", total=None, rate="")
        counters = {"frames": 0}

        def on_start(total: int) -> None:
            progress.update(task, total=total, description="videos")
            progress.start_task(task)
            counters["started"] = progress.get_time()

        def on_frames(count: int) -> None:
            counters["frames"] += count
            elapsed = progress.get_time() - counters.get("started", progress.get_time())
            if elapsed > 0:
                progress.update(task, rate=f"{counters['frames'] / elapsed:.0f} frames/s")

        def on_video(result: VideoOutcome) -> None:
            progress.advance(task)
            if result.status == "failed":
                progress.console.print(
                    f"[yellow]skipped[/yellow] {escape(result.video_id)}: {escape(result.reason)}",
                    highlight=False,
                )

        try:
            summary = extract_lib.extract(
                videos, captions, out, options, on_start=on_start, on_video=on_video, on_frames=on_frames
            )
        except extract_lib.ExtractInterrupted as stopped:
            summary = stopped.summary
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        print_summary(summary, terminal.console())
    if summary.interrupted:
        stderr.print(
            f"[yellow]interrupted[/yellow]: {summary.count('done')} video(s) extracted before it "
            f"are stored ({summary.manifest_videos} in the store); the same command goes on "
            "with the rest",
            highlight=False,
        )
        raise typer.Exit(130)
    # under torchrun a non-zero exit makes the launcher kill the other ranks mid-video, so
    # there failures are only reported (summary, manifest), never turned into an exit code
    under_torchrun = shard is None and "TORCHELASTIC_RUN_ID" in os.environ
    if summary.failed and not under_torchrun:
        raise typer.Exit(1)


def print_summary(summary: ExtractSummary, console: Console) -> None:
    """The counts table, the failures with their reasons, and the caption counts."""
    report = summary.to_dict()
    shard = f" (shard {summary.shard[0]}/{summary.shard[1]})" if summary.shard[1] > 1 else ""
    table = Table(title=f"[bold]stg extract[/bold] → {escape(summary.out)}{shard}", title_justify="left")
    table.add_column("videos")
    table.add_column("count", justify="right")
    table.add_row("extracted now", str(report["done"]))
    table.add_row("already in the store", str(report["already_stored"]))
    table.add_row("skipped: no usable caption", str(report["no_captions"]))
    table.add_row("[red]failed[/red]" if report["failed"] else "failed", str(report["failed"]))
    table.add_row("in the store now", str(report["store_videos"]))
    console.print(table)
    if summary.packs:
        console.print(f"[bold]packs[/bold]: {len(summary.packs)} written by this shard", highlight=False)
    rate = report["frames_per_second"]
    console.print(
        f"[bold]frames[/bold]: {report['frames']} extracted in {report['extract_seconds']:.1f} s"
        + (f" ({rate:.1f} frames/s)" if rate else "")
        + f", {report['seconds']:.1f} s in all",
        highlight=False,
    )
    console.print(
        f"[bold]store[/bold]: fingerprint {summary.fingerprint}, text encoder {escape(summary.text_encoder)}",
        highlight=False,
    )
    if summary.failed:
        failures = Table(title="failed videos", title_justify="left")
        failures.add_column("video")
        failures.add_column("file", overflow="fold")
        failures.add_column("reason", overflow="fold")
        for result in summary.failed:
            reason = result.reason.removeprefix(f"{result.path}: ")
            failures.add_row(escape(result.video_id), escape(result.path), escape(reason))
        console.print(failures)
    captions = report["captions"]
    skipped = ", ".join(
        f"{count} {reason.replace('_', ' ')}" for reason, count in captions["skipped"].items()
    )
    console.print(
        f"[bold]captions[/bold]: {captions['kept']} kept for {captions['videos']} videos"
        + (f"; skipped {skipped}" if skipped else "; none skipped")
        + (
            f"; {summary.captions_without_video} captioned video(s) not among VIDEOS"
            if summary.captions_without_video
            else ""
        ),
        highlight=False,
    )
    for bad in captions["bad_files"]:
        console.print(f"[yellow]unreadable captions[/yellow] {escape(bad)}", highlight=False)
    if summary.ignored_files:
        console.print(f"ignored {len(summary.ignored_files)} file(s) without a video suffix", highlight=False)
