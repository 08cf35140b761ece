"""How far the model-free priors get on the synthetic benchmark's test split, seed by seed.

For each benchmark seed, renders the test split of ``stg synth`` (the quick preset: the same
test videos as ``stg synth OUT --seed S``, whose test plans do not depend on the train split)
and scores, given true timing, the oracle (the box centres: 100 by construction) and every prior
of :mod:`stg_cli.metrics.baselines` (centre, random, motion, centred energy) with the pointing
game, as ``stg demo`` and ``stg score --videos`` do. A benchmark on which a prior that reads no
query points well cannot show grounding; synth v2 aims at every prior ≤ 35 %.

Usage: python benchmarks/priors.py [--seeds 0 1 2 3] [--distractors N] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from stg_cli.metrics.baselines import PRIORS, baseline_predictions
from stg_cli.metrics.score import load_ground_truth, score
from stg_cli.runs.evaluation import LabelledSplit, split_priors
from stg_cli.synth import SynthConfig, generate


def seed_row(out: Path, seed: int, distractors: int | None) -> dict:
    """Renders the test split of ``seed`` into ``out`` (reused when there) and scores it."""
    config = SynthConfig.quick(seed=seed, train_videos=0, distractors=distractors)
    manifest = out / "synth.json"
    begin = time.perf_counter()
    if not manifest.is_file() or json.loads(manifest.read_text())["config"] != config.to_dict():
        generate(out, config, overwrite=True)
    render_s = time.perf_counter() - begin
    split = LabelledSplit.find(out / "test")
    truth = load_ground_truth([split.annotations], "synth")
    oracle = score(baseline_predictions(truth, "oracle"), truth, "synth").metrics
    priors = split_priors(split)
    return {
        "seed": seed,
        "seconds": priors.frames["centre"],
        "oracle": oracle["pointing_game"],
        **{kind: priors.scores[kind]["pointing_game"] for kind in PRIORS},
        "render_s": round(render_s, 1),
    }


def markdown(rows: list[dict]) -> str:
    """Seed, annotated seconds, oracle and each prior (pointing, percent), then the mean."""
    columns = ["oracle", *PRIORS]
    lines = [
        "| seed | seconds | " + " | ".join(c.replace("_", " ") for c in columns) + " | best prior |",
        "|---:|---:|" + "---:|" * (len(columns) + 1),
    ]
    for row in rows:
        best = max(row[kind] for kind in PRIORS)
        lines.append(
            f"| {row['seed']} | {row['seconds']} | "
            + " | ".join(f"{row[c]:.1f}" for c in columns)
            + f" | {best:.1f} |"
        )
    means = [statistics.fmean(row[c] for row in rows) for c in columns]
    best = statistics.fmean(max(row[kind] for kind in PRIORS) for row in rows)
    lines.append("| mean | | " + " | ".join(f"{m:.1f}" for m in means) + f" | {best:.1f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument(
        "--distractors",
        type=int,
        default=None,
        help="distractor actions (default: the difficulty's; 0: the v1 world)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/priors"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    world = "v1" if args.distractors == 0 else "v2"
    rows = [seed_row(args.out / f"{world}-seed{seed}", seed, args.distractors) for seed in args.seeds]
    print(markdown(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"distractors": args.distractors, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
