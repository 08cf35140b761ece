"""``stg ground``: when and where each query happens in untrimmed videos."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from stg_cli import terminal
from stg_cli.defaults import DEFAULT_MASK_THRESHOLD, DEFAULT_SMOOTH, DEFAULT_TAU
from stg_cli.errors import UserError
from stg_cli.terminal import escape


def command(
    videos: list[str] = typer.Argument(
        ..., metavar="VIDEO...", help="Video files and/or folders of videos (id = file name without suffix)."
    ),
    queries: Path | None = typer.Option(
        None,
        "--queries",
        help="q.txt (one query per line, # comments), a vid2step.json pool per video, or a "
        "segment file (seg.json: each video's annotated steps).",
    ),
    query: list[str] = typer.Option(
        [],
        "--query",
        metavar="TEXT",
        help="A query (repeat for several); with --queries, added to every video's pool.",
    ),
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="A stg train run folder, its export/ folder or a checkpoint .pt."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder for the predictions (created)."),
    viz: bool = typer.Option(False, "--viz", help="Also write <id>.overlay.mp4 and <id>.timeline.png."),
    tau: float | None = typer.Option(
        None,
        "--tau",
        help="Cosine a query needs to claim a frame (else background). Default: the threshold "
        f"calibrated in training, {DEFAULT_TAU} for a model without one.",
    ),
    smooth: int = typer.Option(
        DEFAULT_SMOOTH, "--smooth", help="Majority-filter window over frame labels, odd (0: off)."
    ),
    heatmap: str = typer.Option(
        "auto",
        "--heatmap",
        help="Heatmaps from the global branch's activation map (global) or the local branch's "
        "attention: its paper chain (paper) or rollout (rollout); auto: paper for a model "
        "trained with --local-projections shared, else global.",
    ),
    mask_threshold: float = typer.Option(
        DEFAULT_MASK_THRESHOLD,
        "--mask-threshold",
        help="Mask = pixels whose cell probability is ≥ this (7×7 grid: uniform = 0.0204).",
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="Analysed frames per second (default: the model's, 1)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    workers: int = typer.Option(
        0,
        "--workers",
        help="Processes grounding videos in parallel, each loading its own copy of the model "
        "on --device and using its share of the CPU cores (0: one video at a time in this process).",
    ),
    features: Path | None = typer.Option(
        None,
        "--features",
        help="The feature store the model was trained on: its text encoder, and stored features "
        "for videos in it.",
    ),
    gt: Path | None = typer.Option(
        None,
        "--gt",
        help="ground_seg.json / seg.json / YouCook2-Interactions' final_dataset_segments.pkl (or "
        "their folder): ground truth drawn in the timeline.",
    ),
    trimmed: bool = typer.Option(
        False,
        "--trimmed",
        help="Take when and what from the --gt segments (each segment's label is its query; "
        "without --queries/--query they are the pool) and predict only where: the trimmed "
        "protocol of the pointing game.",
    ),
    export: list[str] = typer.Option(
        [],
        "--export",
        metavar="FORMAT",
        help="Also write activitynet.json (ActivityNet detections) and/or ava.csv + "
        "ava_labels.pbtxt (AVA-style boxes): activitynet | ava, repeatable.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout."),
) -> None:
    """Ground free-text queries in videos: when (segments) and where (a point and a box per frame).

    Queries come from --queries FILE (a text file, vid2step.json or a segment file such as
    seg.json), from --query TEXT (repeatable), or both; with --trimmed and neither, from the
    --gt segments' labels.

    Writes <id>.json and <id>.heatmaps.npz per video, and predictions.json for all, into --out.

    A video that cannot be read is reported and skipped, and the others are still grounded.
    Ctrl-C stops the run (with --workers too) and keeps the files of every finished video.

    Exit code: 0 when every video was grounded, 1 when some failed, 2 for bad arguments.
    """
    from stg_cli.ground import pipeline
    from stg_cli.ground.output import check_exports, write_exports
    from stg_cli.ground.queries import gather_queries, queries_of_segments
    from stg_cli.ground.temporal import check_smooth
    from stg_cli.runs import grounding as runs
    from stg_cli.video_files import find_videos

    if trimmed and gt is None:
        raise UserError("--trimmed takes the segments from --gt: give --gt ground_seg.json")
    settings = pipeline.GroundSettings(
        tau=tau,
        smooth=check_smooth(smooth),
        heatmap=heatmap,
        mask_threshold=mask_threshold,
        fps=fps,
        viz=viz,
        trimmed=trimmed,
    )
    workers = runs.check_workers(workers)
    export = check_exports(export)
    ground_truth = runs.load_truth_segments(gt) if gt is not None else None
    if trimmed and queries is None and not query:
        labels = {video: [segment.label for segment in items] for video, items in ground_truth.items()}
        query_set = queries_of_segments(labels, f"{gt} (segment labels)")
    else:
        query_set = gather_queries(queries, query)
    stderr = terminal.console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        task = progress.add_task("loading the model", total=None)
        inner = progress.add_task("", total=None, visible=False)
        grounder = pipeline.Grounder(checkpoint, features=features, device=device)
        store_ids = grounder.store.video_ids if grounder.store is not None else ()
        inputs, problems = find_videos(videos, store_ids)
        for argument, reason in problems:
            progress.console.print(
                f"[yellow]skipped[/yellow] {escape(argument)}: {escape(reason)}", highlight=False
            )
        if not inputs:
            raise UserError("no video to ground (give video files or folders of videos)")
        progress.update(task, description="videos", total=len(inputs), completed=0)

        def on_video(index: int, total: int, video_id: str) -> None:
            progress.update(
                task, completed=index, description=f"videos: {escape(video_id)}" if video_id else "videos"
            )
            progress.update(inner, visible=False)

        def on_step(stage: str, done: int, total: int) -> None:
            progress.update(inner, description=f"  {stage}", completed=done, total=total, visible=True)

        interrupted = None
        try:
            results, timings = runs.ground_videos(
                grounder,
                inputs,
                query_set,
                settings,
                out,
                on_video=on_video,
                on_step=on_step,
                ground_truth=ground_truth,
                workers=workers,
            )
        except runs.GroundingInterrupted as stopped:
            interrupted, results, timings = stopped, stopped.results, stopped.timings
    summary = runs.run_summary(results, timings, out)
    finished = {result.video_id: result.prediction for result in results if result.prediction}
    summary["exports"] = [str(path) for path in write_exports(finished, out, export)]
    summary["tau"] = grounder.threshold(settings)
    summary["interrupted"] = interrupted is not None
    summary["failed"] += len(problems)
    summary["missing"] = [{"argument": argument, "error": reason} for argument, reason in problems]
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_summary(summary, terminal.console())
    if interrupted is not None:
        stderr.print(
            f"[yellow]interrupted[/yellow]: {len(results)} of {interrupted.total} video(s) "
            f"finished before it, their predictions in {escape(summary['predictions'])}",
            highlight=False,
        )
        raise typer.Exit(130)
    if summary["failed"]:
        raise typer.Exit(1)


_SUFFIXES = {
    "json": ".json",
    "heatmaps": ".heatmaps.npz",
    "overlay": ".overlay.mp4",
    "timeline": ".timeline.png",
}


def print_summary(summary: dict, console: Console) -> None:
    """Videos table (frames, segments, files or the error), queries table, timings line."""
    table = Table(title=f"[bold]stg ground[/bold] → {escape(summary['out'])}", title_justify="left")
    table.add_column("video", overflow="fold")
    table.add_column("frames", justify="right")
    table.add_column("segments", justify="right")
    table.add_column("written / error", overflow="fold")
    for video in summary["videos"]:
        if "error" in video:
            table.add_row(escape(video["video"]), "-", "-", f"[red]{escape(video['error'])}[/red]")
            continue
        files = " ".join(_SUFFIXES.get(kind, kind) for kind in video["files"])
        notes = "".join(f"\n[dim]{escape(note)}[/dim]" for note in video["notes"])
        if video["unknown_queries"]:
            unknown = ", ".join(video["unknown_queries"])
            notes += f"\n[yellow]no known word, never detected: {escape(unknown)}[/yellow]"
        table.add_row(
            escape(video["video"]), str(video["frames"]), str(len(video["segments"])), escape(files) + notes
        )
    for missing in summary.get("missing", []):
        table.add_row(escape(missing["argument"]), "-", "-", f"[red]{escape(missing['error'])}[/red]")
    console.print(table)
    queries = Table(title="segments per query", title_justify="left")
    queries.add_column("query", overflow="fold")
    queries.add_column("videos", justify="right")
    queries.add_column("segments", justify="right")
    queries.add_column("seconds", justify="right")
    queries.add_column("mean score", justify="right")
    for query, entry in sorted(summary["queries"].items(), key=lambda item: -item[1]["segments"]):
        score = "-" if entry["mean_score"] is None else f"{entry['mean_score']:.3f}"
        queries.add_row(
            escape(query), str(entry["videos"]), str(entry["segments"]), f"{entry['seconds']:.0f}", score
        )
    if summary["queries"]:
        console.print(queries)
    seconds = summary["seconds"]
    stages = ", ".join(f"{stage} {value:.1f} s" for stage, value in seconds.items() if value > 0)
    failed = f", [red]{summary['failed']} failed[/red]" if summary["failed"] else ""
    console.print(
        f"{summary['grounded']} grounded{failed} with τ = {summary['tau']:.3f}; {stages}; "
        f"predictions in {escape(summary['predictions'])}"
        + "".join(f", {escape(path)}" for path in summary.get("exports", [])),
        highlight=False,
    )
