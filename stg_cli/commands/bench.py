"""``stg bench``: the native ops against their references, and the pipeline stages' speed."""

from __future__ import annotations

import json
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
)
from rich.table import Table

from stg_cli import files, terminal
from stg_cli.errors import UserError
from stg_cli.terminal import escape

if TYPE_CHECKING:
    from stg_cli.bench import BenchReport, BenchResult, Comparison


def command(
    names: list[str] | None = typer.Argument(
        None,
        metavar="[NAME]...",
        help=(
            "Benchmarks to run: sinkhorn, xattn, rollout, score, ground, train, extract or all "
            "(default: all)."
        ),
        show_default=False,
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Fewer repeats and smaller shapes where the full one is slow."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON report to this file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    device: str = typer.Option(
        "auto", "--device", help="auto (the CPU, plus CUDA when available), cpu or cuda."
    ),
) -> None:
    """Time the native ops against their references and the pipeline stages (score, ground,
    train, extract).

    Prints a table (or JSON) with medians, peak memory and the comparisons with the targets.
    """
    from stg_cli.bench import run_benchmarks

    if out is not None and out.exists() and not overwrite:  # checked before minutes of timing
        raise UserError(f"{out} exists: choose another --out or add --overwrite")
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=terminal.console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("benchmarks", total=None)

        def on_progress(completed: int, total: int, label: str | None) -> None:
            progress.update(task, completed=completed, total=total, description=label or "done")

        report = run_benchmarks(names, quick=quick, device=device, on_progress=on_progress)
    if out is not None:
        write_json(report, out)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    console = terminal.console()
    print_report(report, console)
    if out is not None:
        console.print(f"wrote {escape(str(out))}", highlight=False)


def write_json(report: BenchReport, path: Path) -> None:
    """Writes ``report.to_dict()`` as indented JSON, creating the parent folder."""
    files.write_json(path, report.to_dict())


def print_report(report: BenchReport, console: Console) -> None:
    """One table per case (op, shape, device), a line on the targets and the machine line."""
    for (op, shape, device), rows in _by_case(report.results).items():
        comparisons = [
            item for item in report.comparisons if (item.op, item.shape, item.device) == (op, shape, device)
        ]
        title = f"[bold]{escape(op)}[/bold]  {escape(shape)}  ({escape(device)})"
        table = _case_table(title, rows, comparisons)
        table.caption = _bandwidth_caption(rows, report.machine.copy_gb_per_s.get(device))
        console.print(table)
    targets = [item for item in report.comparisons if item.target_min is not None]
    met = sum(item.met is True for item in targets)
    missed = sum(item.met is False for item in targets)
    unmeasured = len(targets) - met - missed
    mode = "quick" if report.quick else "full"
    console.print(
        f"[bold]targets[/bold]: [green]{met} met[/green], [red]{missed} missed[/red], "
        f"{unmeasured} not measured ({mode} run, {report.duration_s:.0f} s)"
    )
    console.print(f"[bold]machine[/bold]: {escape(report.machine.summary())}", highlight=False)


def _bandwidth_caption(rows: list[BenchResult], copy_gb_per_s: float | None) -> str:
    """E.g. "native: 12.3 GB/s of inputs and outputs (plain copy: 40.1 GB/s)"."""
    from stg_cli.bench import NATIVE

    native = next((row for row in rows if row.variant == NATIVE), None)
    if native is None or native.gb_per_s is None:
        return ""
    copy = f" (plain copy: {_number(copy_gb_per_s)} GB/s)" if copy_gb_per_s else ""
    return f"native: {_number(native.gb_per_s)} GB/s of inputs and outputs{copy}"


def _by_case(results: list[BenchResult]) -> dict[tuple[str, str, str], list[BenchResult]]:
    cases: dict[tuple[str, str, str], list[BenchResult]] = {}
    for row in results:
        cases.setdefault((row.op, row.shape, row.device), []).append(row)
    return cases


def _case_table(title: str, rows: list[BenchResult], comparisons: list[Comparison]) -> Table:
    unit = next((row.throughput_unit for row in rows if row.throughput is not None), None)
    table = Table(title=title, title_justify="left")
    table.add_column("variant", overflow="fold")
    table.add_column("median ms", justify="right")
    if unit is not None:
        table.add_column(f"{escape(unit)}/s", justify="right")
    table.add_column("peak MB", justify="right")
    table.add_column("vs reference", justify="right")
    table.add_column("vs this")
    for row in rows:
        if row.median_ms is None:
            verdicts = [f"[dim]skipped: {escape(row.note or '')}[/dim]"]
        else:
            verdicts = [_comparison_text(item) for item in comparisons if item.baseline == row.variant]
            if row.note is not None:
                verdicts.append(f"[dim]{escape(row.note)}[/dim]")
        throughput = [_number(row.throughput)] if unit is not None else []
        table.add_row(
            escape(row.variant),
            _number(row.median_ms),
            *throughput,
            _number(row.peak_mb),
            _times(row.speedup_vs_reference),
            "\n".join(verdicts),
        )
    return table


def _comparison_text(item: Comparison) -> str:
    """E.g. "12.3× faster (target ≥ 10×: met)", "2.10× more memory" or, for a subject other
    than the native variant, "default: 1.6× faster"."""
    from stg_cli.bench import NATIVE

    named = "" if item.subject == NATIVE else f"{escape(item.subject)}: "
    if item.ratio is None:
        return f"[dim]{named}not measured[/dim]"
    if item.measure == "time":
        better, worse = "faster", "slower"
    else:
        better, worse = "less memory", "more memory"
    text = f"{_number(item.ratio)}× {better}" if item.ratio >= 1 else f"{_number(1 / item.ratio)}× {worse}"
    text = named + text
    if item.target_min is None:
        return text
    minimum = item.target_min
    goal = f"≥ {minimum:g}×" if minimum >= 1 else f"within {1 / minimum:g}×"
    verdict = "[green]met[/green]" if item.met else "[red]missed[/red]"
    return f"{text} (target {goal}: {verdict})"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{_number(value)}×"
