"""Start-up cost of the ``stg`` command line against importing torch, in one interleaved run.

    python benchmarks/startup.py [--repeats 7] [--json FILE]

Each round runs, in a fresh interpreter each, ``stg --help``, ``stg --version``,
``stg ground --help``, ``stg train --help`` and ``python -c "import torch"``, in that order, so
that a slower moment of a shared machine hits all of them alike. Prints the median wall time
and peak memory of each and its ratio to importing torch (the target: at most 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "stg --help": [sys.executable, "-m", "stg_cli", "--help"],
    "stg --version": [sys.executable, "-m", "stg_cli", "--version"],
    "stg ground --help": [sys.executable, "-m", "stg_cli", "ground", "--help"],
    "stg train --help": [sys.executable, "-m", "stg_cli", "train", "--help"],
    "import torch": [sys.executable, "-c", "import torch"],
}
BASELINE = "import torch"
TARGET_RATIO = 0.5


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one run of ``argv``."""
    begin = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - begin
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {process.returncode}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    memory: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for name, argv in COMMANDS.items():  # warm the file cache once, untimed
        run_once(argv)
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            seconds, megabytes = run_once(argv)
            times[name].append(seconds)
            memory[name].append(megabytes)
    baseline = statistics.median(times[BASELINE])
    rows = {
        name: {
            "median_s": statistics.median(values),
            "peak_rss_mb": statistics.median(memory[name]),
            "ratio_to_import_torch": statistics.median(values) / baseline,
        }
        for name, values in times.items()
    }
    print(f"{'command':<20} {'median s':>9} {'peak MB':>8} {'÷ import torch':>15}")
    for name, row in rows.items():
        print(
            f"{name:<20} {row['median_s']:>9.3f} {row['peak_rss_mb']:>8.0f} "
            f"{row['ratio_to_import_torch']:>15.3f}"
        )
    worst = max(row["ratio_to_import_torch"] for name, row in rows.items() if name != BASELINE)
    print(
        f"worst ratio {worst:.3f} (target ≤ {TARGET_RATIO}): {'met' if worst <= TARGET_RATIO else 'NOT met'}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"repeats": args.repeats, "rows": rows, "target_ratio": TARGET_RATIO}, handle, indent=1)


if __name__ == "__main__":
    main()
