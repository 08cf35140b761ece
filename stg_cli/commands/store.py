"""``stg store status|pack FEATS``: how far the extraction of a store got, across shards and
machines; move its per-video folders into packs."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from stg_cli import terminal
from stg_cli.defaults import VIDEOS_PER_PACK
from stg_cli.terminal import escape

if TYPE_CHECKING:
    from stg_cli.features.status import StoreStatus

app = typer.Typer(
    name="store",
    help="Inspect a feature store (progress of its shards) or pack it for large corpora.",
    no_args_is_help=True,
)


@app.command("status")
def status(
    store: Path = typer.Argument(..., metavar="FEATS", help="Feature store folder (stg extract --out)."),
    rebuild: bool = typer.Option(
        False, "--rebuild-manifest", help="First rebuild manifest.json from the videos on disk."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Videos done, failed and being written, and each extraction shard's progress.

    Exit code 0; 1 when a video failed or a pack is damaged.
    """
    from stg_cli.features.status import store_status

    report = store_status(store, rebuild=rebuild)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_status(report)
    if report.failed or report.damaged_packs:
        raise typer.Exit(1)


def print_status(report: StoreStatus) -> None:
    """The store's counts, its shards' table, the failures and the damaged packs."""
    console = terminal.console()
    table = Table(title=f"[bold]stg store status[/bold] {escape(report.root)}", title_justify="left")
    table.add_column("videos")
    table.add_column("count", justify="right")
    table.add_row("stored", str(report.videos))
    table.add_row(f"  in {report.packs} pack(s)", str(report.in_packs))
    table.add_row("  in per-video folders", str(report.in_folders))
    table.add_row("[red]failed[/red]" if report.failed else "failed", str(len(report.failed)))
    table.add_row("in tmp/ (being written)", str(report.being_written))
    manifest = "missing" if report.manifest_videos is None else str(report.manifest_videos)
    table.add_row("listed in manifest.json" + (" (rebuilt now)" if report.manifest_rebuilt else ""), manifest)
    console.print(table)
    console.print(f"backbone {escape(report.backbone)}, fingerprint {report.fingerprint}", highlight=False)
    if not report.manifest_current:
        console.print(
            "[yellow]manifest.json lags behind the stored videos[/yellow] (shards still running, or "
            "one was killed): it is rebuilt by each extraction; --rebuild-manifest rebuilds it now",
            highlight=False,
        )
    if report.shards:
        shards = Table(title="shards", title_justify="left")
        for column in (
            "shard",
            "state",
            "host",
            "videos",
            "done",
            "stored before",
            "failed",
            "no captions",
            "left",
            "updated",
        ):
            shards.add_column(
                column, justify="left" if column in ("shard", "state", "host", "updated") else "right"
            )
        gone = set(report.gone)
        for record in report.shards:
            name = f"{record.shard[0]}/{record.shard[1]}"
            state = "process gone" if name in gone else record.state
            updated = datetime.datetime.fromtimestamp(record.updated).strftime("%Y-%m-%d %H:%M:%S")
            shards.add_row(
                name,
                state,
                escape(record.host),
                str(record.in_shard),
                str(record.done),
                str(record.stored),
                str(record.failed),
                str(record.no_captions),
                str(record.remaining),
                updated,
            )
        console.print(shards)
    if report.missing_shards:
        console.print(f"shards never started: {', '.join(report.missing_shards)}", highlight=False)
    for video_id, reason in report.failed.items():
        console.print(f"[red]failed[/red] {escape(video_id)}: {escape(reason)}", highlight=False)
    for name, reason in report.damaged_packs.items():
        console.print(f"[red]damaged pack[/red] {escape(name)}: {escape(reason)}", highlight=False)


@app.command("pack")
def pack(
    store: Path = typer.Argument(..., metavar="FEATS", help="Feature store folder (stg extract --out)."),
    videos_per_pack: int = typer.Option(VIDEOS_PER_PACK, "--videos-per-pack", min=1, help="Videos per pack."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Move the store's per-video folders into packs: 8 files per pack instead of 8 per video.

    Resumable: an interrupted run loses nothing, and the same command finishes the work. Exit
    code 1 when some folders were damaged (they stay as they are).
    """
    from stg_cli.features.packing import pack_store

    stderr = terminal.console(stderr=True)
    with stderr.status("packing") as spinner:
        summary = pack_store(
            store,
            videos_per_pack,
            on_pack=lambda name, count: spinner.update(f"packed {count} videos into {name}"),
        )
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        console = terminal.console()
        console.print(
            f"[bold]stg store pack[/bold] {escape(summary.root)}: {summary.videos_packed} video(s) into "
            f"{len(summary.packs)} pack(s) in {summary.seconds:.1f} s; {summary.store_videos} in the store"
            + (
                f"; {summary.duplicates_removed} folder(s) of already packed videos removed"
                if summary.duplicates_removed
                else ""
            ),
            highlight=False,
        )
        for name, reason in summary.damaged.items():
            console.print(
                f"[red]damaged, left in place[/red] videos/{escape(name)}: {escape(reason)}", highlight=False
            )
        if summary.damaged:
            console.print("delete a damaged folder and rerun stg extract to extract its video again")
    if summary.damaged:
        raise typer.Exit(1)
