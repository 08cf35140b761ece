"""Sinkhorn benchmark: native vs the eager reference vs POT, B=64 K=20 U=80, 3 and 50 iterations.

Usage: python benchmarks/bench_sinkhorn.py [--quick] [--json PATH] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from stg_cli.bench import DEVICE_CHOICES, run_benchmarks
from stg_cli.commands.bench import print_report, write_json
from stg_cli.errors import UserError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller shapes")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report here")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    args = parser.parse_args()
    try:
        report = run_benchmarks(["sinkhorn"], quick=args.quick, device=args.device)
    except UserError as error:
        parser.error(str(error))
    console = Console()
    print_report(report, console)
    if args.json is not None:
        write_json(report, args.json)
        console.print(f"wrote {args.json}", highlight=False)


if __name__ == "__main__":
    main()
