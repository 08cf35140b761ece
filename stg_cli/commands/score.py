"""``stg score``: score grounding predictions on a dataset's annotations."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stg_cli import files, terminal
from stg_cli.defaults import DATASETS, DEFAULT_MASK_THRESHOLD
from stg_cli.errors import UserError
from stg_cli.terminal import escape

if TYPE_CHECKING:
    from stg_cli.metrics.baselines import PriorScores
    from stg_cli.metrics.score import ScoreReport

TITLES = {
    "groundingyoutube": "GroundingYouTube",
    "synth": "synth (GroundingYouTube format)",
    "miningyoutube": "MiningYouTube",
    "youcook-interactions": "YouCook2-Interactions",
}
LISTED = 5
PRIOR_NAMES = {
    "centre": "centre",
    "random": "random, seed 0",
    "motion": "motion",
    "centred_energy": "centred energy",
}


def command(
    predictions: Path = typer.Argument(
        ..., help="Predictions: a folder of per-video JSONs, a combined JSON or one video's JSON."
    ),
    gt: list[Path] = typer.Option(..., "--gt", help="Annotation folder or files (repeat --gt for several)."),
    dataset: str = typer.Option(..., "--dataset", help=" | ".join(DATASETS)),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    per_class: bool = typer.Option(False, "--per-class", help="Also print per-class tables."),
    per_video: Path | None = typer.Option(
        None, "--per-video", help="Write one CSV row per video to this file."
    ),
    tau: float = typer.Option(0.5, "--tau", help="Background score of the MiningYouTube alignment."),
    tolerance: float = typer.Option(15.0, "--tolerance", help="Pixels of the tolerant pointing game."),
    require_label: bool = typer.Option(
        False,
        "--require-label",
        help="Pointing game and spatial accuracy also need the right predicted label.",
    ),
    videos: Path | None = typer.Option(
        None,
        "--videos",
        help="Folder of the annotated videos: also score the motion and centred-energy priors "
        "(and, for youcook-interactions, take each video's frame size from it).",
    ),
    protocol: str = typer.Option(
        "stg",
        "--protocol",
        help="stg (the definitions in README) or official (the authors' evaluation conventions "
        "for the trimmed spatial metrics and the mask scale; see README).",
    ),
    tube_regions: str = typer.Option(
        "masks", "--tube-regions", help="Video mAP's predicted regions: masks (heatmaps) or boxes."
    ),
    mask_threshold: float = typer.Option(
        DEFAULT_MASK_THRESHOLD,
        "--mask-threshold",
        help="Masks of video mAP: pixels whose cell probability is ≥ this (stg protocol).",
    ),
    frame_ranges: str = typer.Option(
        "inclusive",
        "--frame-ranges",
        help="MiningYouTube frame ownership: inclusive (whole seconds) or half_open.",
    ),
) -> None:
    """Score predictions: IoU+Point, pointing game, video mAP, spatial accuracy/mAP, IoU/IoD,
    with the model-free priors given true timing beside the spatial scores."""
    from stg_cli.metrics.baselines import score_priors
    from stg_cli.metrics.predictions import load_predictions
    from stg_cli.metrics.score import ScoreOptions, load_ground_truth, score, with_video_frame_sizes
    from stg_cli.video_files import video_paths

    if dataset.strip().lower() not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    spatial = dataset.strip().lower() != "miningyoutube"
    if videos is not None and not spatial:
        raise UserError("--videos is for the spatial priors; miningyoutube has no boxes")
    paths = video_paths(videos) if videos is not None else None
    options = {
        "tolerance": tolerance,
        "require_label": require_label,
        "protocol": protocol.strip().lower(),
        "tube_regions": tube_regions.strip().lower(),
        "mask_threshold": mask_threshold,
        "frame_ranges": frame_ranges.strip().lower(),
    }
    ScoreOptions(tau=tau, **options)
    ground_truth = load_ground_truth(gt, dataset, options["protocol"])
    if paths is not None and dataset.strip().lower() == "youcook-interactions":
        ground_truth = with_video_frame_sizes(ground_truth, paths)
    loaded = load_predictions(predictions)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=terminal.console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("scoring", total=None)

        def update(done: int, total: int, *_: object) -> None:
            progress.update(task, completed=done, total=total)

        report = score(loaded, ground_truth, dataset, on_progress=update, tau=tau, **options)
        priors = None
        if spatial:
            progress.update(task, description="priors", completed=0, total=None)
            priors = score_priors(ground_truth, dataset, paths, on_video=update, **options)
    notes = prior_notes(report, priors, videos is not None) + report.notes
    if per_video is not None:
        write_per_video(report, per_video)
    if as_json:
        payload = {**report.to_dict(), "notes": notes}
        if priors is not None:
            payload["priors"] = priors.to_dict()
        typer.echo(json.dumps(payload, indent=2))
        return
    console = terminal.console()
    print_report(report, console, per_class, priors, notes)
    if per_video is not None:
        console.print(f"wrote {escape(str(per_video))}", highlight=False)


def prior_notes(report: ScoreReport, priors: PriorScores | None, with_videos: bool) -> list[str]:
    """The notes about the priors: first whether one comes within 5 points of the pointing game
    of the predictions, then what was not scored."""
    if priors is None:
        return []
    from stg_cli.metrics.baselines import close_priors_note

    notes = [note for note in [close_priors_note(priors, report.metrics["pointing_game"])] if note]
    if not with_videos:
        notes.append("the motion and centred-energy priors read the videos: pass --videos DIR")
    return notes + priors.notes


def write_per_video(report: ScoreReport, path: Path) -> None:
    """One CSV row per ground-truth video (columns: the keys of ``report.per_video``)."""
    columns = list(report.per_video[0]) if report.per_video else ["video"]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    for row in report.per_video:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    files.write_text(path, table.getvalue())


def print_report(
    report: ScoreReport,
    console: Console,
    per_class: bool = False,
    priors: PriorScores | None = None,
    notes: list[str] | None = None,
) -> None:
    """The paper's layout for the dataset, the priors beside the spatial scores, then coverage,
    defects and ``notes`` (default: the report's)."""
    metrics = report.metrics
    predicted = report.videos - len(report.missing)
    title = f"[bold]{TITLES[report.dataset]}[/bold]  {report.videos} videos, {predicted} with predictions"
    if report.dataset == "miningyoutube":
        table = _table(title, ["IoU", "IoD", "IoU (pooled)", "IoD (pooled)"])
        table.add_row(*(_pct(metrics[key]) for key in ("iou", "iod", "iou_pooled", "iod_pooled")))
        console.print(table)
    else:
        if "iou_point" in metrics:
            thresholds = [key for key in metrics if key.startswith("map@")]
            headers = ["IoU+Point", "pooled"]
            headers += [key[4:] for key in thresholds] + ["mean"]
            table = _table(f"{title}\nspatio-temporal grounding: IoU+Point, video mAP at tube IoU", headers)
            values = [metrics["iou_point"], metrics["iou_point_pooled"]]
            values += [metrics[key] for key in thresholds] + [metrics.get("map_mean", 0.0)]
            table.add_row(*(_pct(value) for value in values))
            console.print(table)
            title = ""
        else:
            title += "\n"
        tolerance = report.options["tolerance"]
        threshold = report.options["iou_threshold"]
        table = _table(
            f"{title}spatial grounding",
            [
                "pointing game",
                f"±{tolerance:g} px",
                f"spatial acc (IoU > {threshold:g})",
                "spatial mAP",
                "frames",
            ],
        )
        table.add_row(
            _pct(metrics["pointing_game"]),
            _pct(metrics["pointing_game_tolerant"]),
            _pct(metrics["spatial_accuracy"]),
            _pct(metrics["spatial_map"]),
            str(report.counts["pointing_frames"]),
        )
        console.print(table)
    if priors is not None:
        console.print(_priors_table(report, priors))
    if per_class and report.per_class:
        console.print(_per_class_table(report))
    for what, videos in (
        ("without predictions (scored as empty)", report.missing),
        ("predicted but not annotated (ignored)", report.unknown),
    ):
        console.print(_listing(what, videos), highlight=False)
    defects = report.defects
    console.print(
        f"[bold]data defects[/bold]: {defects['degenerate_boxes']} degenerate boxes, "
        f"{defects['boxes_outside_frame']} boxes outside the frame, "
        f"{defects['zero_length_segments']} zero-length segments; "
        f"{escape(report.defect_rule)}",
        highlight=False,
    )
    for note in report.notes if notes is None else notes:
        console.print(f"[bold]note[/bold]: {escape(note)}", highlight=False)


def _priors_table(report: ScoreReport, priors: PriorScores) -> Table:
    """The predictions' spatial scores, then one row per prior that was scored."""
    table = _table(
        "model-free priors given true timing (no model, no query)",
        ["", "pointing", f"±{report.options['tolerance']:g} px", "spatial acc", "spatial mAP", "frames"],
    )
    table.columns[0].justify = "left"
    rows = [("predictions", report.metrics, report.counts["pointing_frames"])]
    rows += [(PRIOR_NAMES[kind], values, priors.frames[kind]) for kind, values in priors.scores.items()]
    for name, values, frames in rows:
        table.add_row(
            name,
            *(
                _pct(values[key])
                for key in ("pointing_game", "pointing_game_tolerant", "spatial_accuracy", "spatial_map")
            ),
            str(frames),
        )
    return table


def _per_class_table(report: ScoreReport) -> Table:
    """One row per class, one column per per-class metric ("-" where a class has none)."""
    names = list(report.per_class)
    headers = {"video_ap_mean": "video AP (mean over θ)", "spatial_ap": "spatial AP"}
    table = Table(title="per class", title_justify="left")
    table.add_column("class", overflow="fold")
    for name in names:
        table.add_column(headers.get(name, name), justify="right")
    labels = sorted({label for values in report.per_class.values() for label in values})
    for label in labels:
        cells = [report.per_class[name].get(label) for name in names]
        table.add_row(escape(label), *("-" if cell is None else _pct(cell) for cell in cells))
    return table


def _listing(what: str, videos: list[str]) -> str:
    if not videos:
        return f"[bold]videos {what}[/bold]: none"
    shown = ", ".join(escape(video) for video in videos[:LISTED])
    more = f" and {len(videos) - LISTED} more" if len(videos) > LISTED else ""
    return f"[bold]videos {what}[/bold]: {len(videos)} ({shown}{more})"


def _table(title: str, headers: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header, justify="right")
    return table


def _pct(value: float) -> str:
    return f"{value:.2f}"


def _cell(value: object) -> object:
    return f"{value:.4f}" if isinstance(value, float) else value
