"""The attention calls of a training step, native ``xattn`` against its bmm reference, one call
at a time on the CPU.

    python benchmarks/xattn_calls.py [--pairs 64] [--repeats 9] [--json FILE]

Each call is forward + backward (a gradient of ones on the output) of 64 pairs at the shapes
the local stack produces: regions → words, words → regions and both self-attentions at the
demo's dims (196 regions = T 4 × 49, 12 words, d = 128) and the paper's (392 regions, d = 512),
and the region self-attention of the factored step (``GroundingModel.factorable``: widths 13
and 26) at 196 to 392 regions, where ``ops="auto"`` switches kernels
(``stg_cli.models.grounding.CPU_NATIVE_MIN_LOGITS``). The two variants run in turn, so that a
change of the machine's load hits both alike; the median after two warm-up calls is kept.
Prints bmm time ÷ native time per call: above 1, the native op is faster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from stg_cli.ops import reference, xattn

WORDS = 12
# (call, queries M, keys L, width D)
CALLS = [
    ("regions → words", 196, WORDS, 128),
    ("words → regions", WORDS, 196, 128),
    ("region self-attention", 196, 196, 128),
    ("word self-attention", WORDS, WORDS, 128),
    ("regions → words", 392, WORDS, 512),
    ("words → regions", WORDS, 392, 512),
    ("region self-attention", 392, 392, 512),
    ("word self-attention", WORDS, WORDS, 512),
    ("factored self-attention", 196, 196, 13),
    ("factored self-attention", 196, 196, 26),
    ("factored self-attention", 280, 280, 26),
    ("factored self-attention", 300, 300, 13),
    ("factored self-attention", 392, 392, 13),
    ("factored self-attention", 392, 392, 26),
]
SCALE = 0.1


def call_seconds(
    native: bool, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> float:
    """Wall time of one forward + backward."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    begin = time.perf_counter()
    if native:
        out, _ = xattn(q, k, v, mask, scale=SCALE)
    else:
        out, _ = reference.xattn(q, k, v, mask, SCALE)
    out.backward(torch.ones_like(out))
    return time.perf_counter() - begin


def measure(pairs: int, repeats: int) -> list[dict]:
    """One row per call of :data:`CALLS`: median ms of each variant and their ratio."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, queries, keys, dim in CALLS:
        q = torch.randn(pairs, queries, dim, generator=generator)
        k = torch.randn(pairs, keys, dim, generator=generator)
        v = torch.randn(pairs, keys, dim, generator=generator)
        mask = torch.ones(pairs, keys, dtype=torch.bool)
        mask[::3, -2:] = False
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeats):
            for native in (True, False):
                times[native].append(call_seconds(native, q, k, v, mask))
        native_ms, reference_ms = (statistics.median(times[kind][2:]) * 1000 for kind in (True, False))
        rows.append(
            {
                "call": name,
                "M": queries,
                "L": keys,
                "D": dim,
                "native_ms": native_ms,
                "reference_ms": reference_ms,
                "reference_over_native": reference_ms / native_ms,
            }
        )
        print(
            f"| {name} | {queries} × {keys} × {dim} | {native_ms:.2f} | {reference_ms:.2f} | "
            f"{reference_ms / native_ms:.2f}× |",
            flush=True,
        )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=64, help="pairs per call (default: %(default)s)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=9,
        help="calls per variant, the first two warm-ups (default: %(default)s)",
    )
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.repeats < 3:
        parser.error("--pairs must be >= 1 and --repeats >= 3")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| call | M × L × D | native ms | bmm reference ms | bmm ÷ native |")
    print("|---|---|---:|---:|---:|")
    rows = measure(args.pairs, args.repeats)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"pairs": args.pairs, "repeats": args.repeats, "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
