"""``stg demo``: synth → extract → train → ground → score on a synthetic benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stg_cli import terminal
from stg_cli.defaults import DEMO_BACKBONE, DEMO_TEXT
from stg_cli.errors import UserError
from stg_cli.terminal import escape

if TYPE_CHECKING:
    from stg_cli.demo import DemoReport

#: metric key → column title, in table order (the temporal metric's key: ``TEMPORAL_METRIC``)
SCORE_COLUMNS = {
    "iou_point": "IoU+Point",
    "map@0.1": "mAP@0.1",
    "map_mean": "mAP mean",
    "pointing_game": "pointing",
}
ROW_TITLES = {
    "trained": "trained",
    "untrained": "untrained",
    "uniform": "uniform split",
    "trained_true_timing": "trained",
    "trained_wrong_query": "trained, wrong query",
    "trained_distractor_query": "trained, distractor",
    "untrained_true_timing": "untrained",
    "centre": "centre point",
    "random": "random point",
    "motion": "motion",
    "centred_energy": "centred energy",
}
TRUE_TIMING_ROWS = (
    "trained_true_timing",
    "trained_wrong_query",
    "trained_distractor_query",
    "untrained_true_timing",
    "centre",
    "random",
    "motion",
    "centred_energy",
)
#: the read-outs' names in the table's title
HEATMAP_TITLES = {"global": "activation-map", "paper": "local-branch (paper chain)", "rollout": "rollout"}
CAPTION = (
    "untrained: the same model at its seeded initialisation; uniform split: each video's "
    "steps in order, evenly over its length; given true timing: the true segments and labels "
    "are given and only where is predicted; wrong query / distractor: the trained model asked "
    "another step of the video / the concurrent unnarrated action, scored against the true "
    "box; centre, random, motion (largest frame difference), centred energy (largest "
    "difference to the video's mean frame): model-free priors"
)


def command(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder of every stage's output."),
    quick: bool = typer.Option(
        False, "--quick", help="The default: 24 + 30 short videos, 100 steps, about 3 minutes on 2 cores."
    ),
    full: bool = typer.Option(
        False, "--full", help="The larger benchmark: 120 + 30 videos of 1-3 min, 600 steps."
    ),
    backbone: str = typer.Option(
        DEMO_BACKBONE,
        "--backbone",
        help="Visual backbone of the extract stage: the pretrained effnet-lite0 or tiny (a "
        "seeded random conv net); any of stg extract's with its default weights.",
    ),
    text: str = typer.Option(
        DEMO_TEXT, "--text", help="Text encoder of the extract stage: word2vec or minilm."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Run the whole pipeline on a synthetic narrated benchmark and compare trained vs untrained.

    A rerun with the same --out reuses the benchmark and the features and resumes or reuses the
    training run; another --backbone or --text needs another --out.
    """
    from stg_cli.demo import STAGES, preset, run_demo

    if quick and full:
        raise UserError("choose one of --quick and --full")
    console = terminal.console(stderr=True)
    with Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks = {stage: progress.add_task(stage, total=None, detail="") for stage in STAGES}

        def on_stage(stage: str, done: int, total: int, detail: str) -> None:
            progress.update(tasks[stage], completed=done, total=total, detail=escape(detail))

        settings = preset("full" if full else "quick", backbone=backbone, text=text)
        report = run_demo(out, settings, on_stage=on_stage, device=device)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    render(report, terminal.console())


def render(report: DemoReport, console: Console) -> None:
    """The notes (a prior close to the model first), the comparison table, then where the
    outputs are."""
    from stg_cli.demo import TEMPORAL_METRIC

    columns = {**SCORE_COLUMNS, TEMPORAL_METRIC: "temporal IoU"}
    for note in report.notes:
        console.print(f"[bold yellow]note[/bold yellow]: {escape(note)}", highlight=False)
    table = Table(
        title=(
            f"stg demo ({report.preset}, {report.backbone} + {report.text}, "
            f"{HEATMAP_TITLES.get(report.heatmap, report.heatmap)} heatmaps): "
            f"{report.test_videos} synthetic test videos; τ "
            + ", ".join(f"{name} {value:.2f}" for name, value in report.thresholds.items())
        ),
        caption=CAPTION,
    )
    table.add_column("model", no_wrap=True)
    for key, title in columns.items():
        table.add_column(title, justify="right")
    given = False
    for row in report.rows:
        if row.name in TRUE_TIMING_ROWS and not given:
            table.add_section()
            table.add_row("[italic]given true timing:[/italic]", *[""] * len(columns))
            given = True
        cells = ["-" if row.metrics[key] is None else f"{row.metrics[key]:.2f}" for key in columns]
        table.add_row(ROW_TITLES.get(row.name, row.name), *cells)
    console.print(table)
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in report.stage_seconds.items())
    loss = (
        f"loss {report.first_loss:.2f} → {report.final_loss:.2f}"
        if report.first_loss is not None and report.final_loss is not None
        else ""
    )
    console.print(f"training: {report.train_steps} steps, {loss}; time: {stages}", highlight=False)
    if report.overlay is not None:
        console.print(f"overlay video: {escape(str(report.overlay))}", highlight=False)
    if report.timeline is not None:
        console.print(f"timeline: {escape(str(report.timeline))}", highlight=False)
    if report.failed_videos:
        console.print(f"[yellow]not grounded:[/yellow] {escape(', '.join(report.failed_videos))}")
    console.print(f"report: {escape(str(report.out / 'report.json'))}", highlight=False)
