"""Cross-modal attention forward+backward at training shapes: native vs bmm reference, SDPA, materialising.

Usage: python benchmarks/bench_xattn.py [--quick] [--json] [--out PATH] [--device auto|cpu|cuda]
(the options of `stg bench xattn`).
"""

import sys

from stg_cli.cli import app

if __name__ == "__main__":
    app(["bench", "xattn", *sys.argv[1:]])
