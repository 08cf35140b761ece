"""Heatmap chains: rollout on [16, 3, 412, 412] and the paper chain, native vs reference.

Usage: python benchmarks/bench_rollout.py [--quick] [--json] [--out PATH] [--device auto|cpu|cuda]
(the options of `stg bench rollout`).
"""

import sys

from stg_cli.cli import app

if __name__ == "__main__":
    app(["bench", "rollout", *sys.argv[1:]])
