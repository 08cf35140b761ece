"""``stg info``: versions, the native build and devices."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from stg_cli import terminal


def command(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Print stg, Python, torch and CUDA versions, the native extension's build and devices."""
    from stg_cli import info as info_lib

    facts = info_lib.collect()
    if as_json:
        typer.echo(json.dumps(facts.to_dict(), indent=2))
        return
    build = facts.extension_build
    if facts.extension_loaded:
        target = "CPU+CUDA" if build.get("cuda") else "CPU"
        archs = f", archs {build['cuda_archs']}" if build.get("cuda_archs") else ""
        extension = f"[green]loaded[/green] ({target}{archs}, gcc {build.get('compiler')})"
    else:
        extension = f"[yellow]not loaded[/yellow]: {facts.extension_reason} (reference ops in use)"
    table = Table(title="stg info", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("stg", facts.stg)
    table.add_row("python", f"{facts.python} ({facts.platform})")
    table.add_row("torch", f"{facts.torch} (CUDA {facts.torch_cuda or 'none'})")
    table.add_row("extension", extension)
    table.add_row(
        "native kernels",
        ", ".join(f"{op}: {'+'.join(devs) or '-'}" for op, devs in facts.native_kernels.items()),
    )
    table.add_row("cpu threads", f"{facts.cpu_threads} (OpenMP {'on' if facts.openmp else 'off'})")
    table.add_row("devices", "\n".join(facts.devices))
    terminal.console().print(table)
