"""Sinkhorn B=64, K=20, U=80 at 3 and 50 iterations: native vs the eager reference vs POT.

Usage: python benchmarks/bench_sinkhorn.py [--quick] [--json] [--out PATH] [--device auto|cpu|cuda]
(the options of `stg bench sinkhorn`).
"""

import sys

from stg_cli.cli import app

if __name__ == "__main__":
    app(["bench", "sinkhorn", *sys.argv[1:]])
