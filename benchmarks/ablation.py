"""Ablation of the method's parts on the synthetic benchmark: does what the paper claims happen?

Each variant changes one or two parts of the default model (Sinkhorn frame selection, global +
local losses, video centring, the heatmaps' source, the local attention) and is trained and
scored like ``stg demo`` (synth → extract → train → ground → score,
:func:`stg_cli.demo.run_demo`) once per training seed; the benchmark (synth seed 0) and its
features are rendered once and copied into every run folder. The table gives mean ± sample
standard deviation over the seeds, in percent, of temporal IoU, IoU+Point, mAP (mean over
thresholds 0.1-0.5), the pointing game, the pointing game given the true segments and labels
(trimmed grounding) and the same asked a wrong query (another step of the video; the concurrent
distractor action), then reference rows from the default runs: the untrained model, the
uniform temporal prior and the model-free spatial priors (centre, random, motion, centred
energy; given true timing).

Usage: python benchmarks/ablation.py [--out DIR] [--seeds N] [--jobs N] [--backbone NAME]
                                    [--preset ablation|demo] [--test-videos N]
                                    [--train-videos N] [--steps N]
                                    [--variant NAME ...] [--quick] [--json FILE]

``--preset demo`` trains and scores each variant exactly like ``stg demo`` (its quick benchmark
and settings) instead of the ablation's own.

Every finished run writes ``<out>/<full|quick>/results/<variant>-s<seed>.json``; a later call with
the same settings reuses those and resumes an interrupted training from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from stg_cli.demo import DemoPreset, preset, run_demo
from stg_cli.synth.config import SynthConfig

# column → (demo report row, metric) of a trained run
METRICS = {
    "temporal IoU": ("trained", "temporal_iou"),
    "IoU+Point": ("trained", "iou_point"),
    "mAP mean": ("trained", "map_mean"),
    "pointing game": ("trained", "pointing_game"),
    "pointing, true timing": ("trained_true_timing", "pointing_game"),
    "wrong query": ("trained_wrong_query", "pointing_game"),
    "distractor query": ("trained_distractor_query", "pointing_game"),
}
PRIOR_ROWS = {
    "centre": "centre point",
    "random": "random point",
    "motion": "motion",
    "centred_energy": "centred energy",
}
# the reference rows, read off the default variant's runs: name → (what it is, column → source)
REFERENCES = {
    "untrained (default)": (
        "what training adds",
        {
            "temporal IoU": ("untrained", "temporal_iou"),
            "IoU+Point": ("untrained", "iou_point"),
            "mAP mean": ("untrained", "map_mean"),
            "pointing game": ("untrained", "pointing_game"),
            "pointing, true timing": ("untrained_true_timing", "pointing_game"),
        },
    ),
    "uniform split": (
        "temporal prior: the steps in order, evenly",
        {"temporal IoU": ("uniform", "temporal_iou")},
    ),
    **{
        f"{title}, true timing": (
            "model-free spatial prior, given true timing and labels",
            {
                "IoU+Point": (row, "iou_point"),
                "mAP mean": (row, "map_mean"),
                "pointing game": (row, "pointing_game"),
                "pointing, true timing": (row, "pointing_game"),
            },
        )
        for row, title in PRIOR_ROWS.items()
    },
}
# columns whose per-seed difference from the default is reported (paired by training seed)
PAIRED = ("temporal IoU", "IoU+Point", "pointing, true timing", "wrong query")
REPORT_ROWS = (
    "trained",
    "untrained",
    "uniform",
    "trained_true_timing",
    "trained_wrong_query",
    "trained_distractor_query",
    "untrained_true_timing",
    *PRIOR_ROWS,
)


@dataclass(frozen=True)
class Variant:
    """One change to the default model: ``ModelConfig`` and ``TrainConfig`` fields to override,
    the heatmap mode of its grounding and its detection threshold and smoothing (``DemoPreset``
    ``tau`` and ``smooth``)."""

    name: str
    tests: str
    model_options: dict = field(default_factory=dict)
    train_options: dict = field(default_factory=dict)
    heatmap: str = "global"
    ground_options: dict = field(default_factory=dict)


SELECTION = "frame selection"
LOSSES = "global + local losses"
CENTRING = "video centring"
LOCAL_MAPS = "local-branch heatmaps (paper chain)"
STACK = "attention stack (paper Table 8), local heatmaps"
PAPER = "paper"
SHARED = "local-branch heatmaps (paper chain), f' = f and g' = g"
# shared projections on the raw features, and with the softer cross-attention that localises best
SHARED_RAW = {"local_projections": "shared", "center_video": False}
SHARED_SOFT = {**SHARED_RAW, "cross_temperature": 0.2}
SOFTER = "softer cosine cross-attention"
SAME_VIDEO = "the other steps of a clip's video as its negatives"
PROTOCOL = "the paper's inference: τ = 0.5, no smoothing"
PAPER_INFERENCE = {"tau": 0.5, "smooth": 0}
VARIANTS = (
    Variant("default", "sinkhorn selection, both losses, centred, global heatmaps"),
    Variant("select none", SELECTION, {"select": "none"}),
    Variant("select global", SELECTION, {"select": "global"}),
    Variant("loss global", LOSSES, train_options={"loss": "global"}),
    Variant("loss local", LOSSES, train_options={"loss": "local"}),
    Variant("loss global, select none", f"{LOSSES} × {SELECTION}", {"select": "none"}, {"loss": "global"}),
    Variant("loss local, select none", f"{LOSSES} × {SELECTION}", {"select": "none"}, {"loss": "local"}),
    Variant("no centring", CENTRING, {"center_video": False}),
    Variant(
        "heatmap paper, no centring", f"{LOCAL_MAPS} × {CENTRING}", {"center_video": False}, heatmap=PAPER
    ),
    Variant("heatmap paper", LOCAL_MAPS, heatmap=PAPER),
    Variant(
        "heatmap paper, loss local",
        f"{LOCAL_MAPS} × {LOSSES}",
        train_options={"loss": "local"},
        heatmap=PAPER,
    ),
    Variant("heatmap paper, select none", f"{LOCAL_MAPS} × {SELECTION}", {"select": "none"}, heatmap=PAPER),
    Variant(
        "heatmap paper, dot logits",
        f"{LOCAL_MAPS}, dot-product cross-attention",
        {"cross_logits": "dot"},
        heatmap=PAPER,
    ),
    Variant(
        "heatmap paper, dot logits, no centring",
        f"{LOCAL_MAPS}, dot-product cross-attention × {CENTRING}",
        {"cross_logits": "dot", "center_video": False},
        heatmap=PAPER,
    ),
    Variant(
        "heatmap paper, dot logits ×4",
        f"{LOCAL_MAPS}, dot-product cross-attention at 4/sqrt(d)",
        {"cross_logits": "dot", "attention_scale": 0.5},
        heatmap=PAPER,
    ),
    Variant(
        "heatmap paper, cosine/0.05",
        f"{LOCAL_MAPS}, sharper cosine cross-attention",
        {"cross_temperature": 0.05},
        heatmap=PAPER,
    ),
    Variant("heatmap paper, cross-cross", STACK, {"attention": "cross-cross"}, heatmap=PAPER),
    Variant("heatmap paper, shared projections", SHARED, {"local_projections": "shared"}, heatmap=PAPER),
    Variant(
        "heatmap paper, shared projections, no centring", f"{SHARED} × {CENTRING}", SHARED_RAW, heatmap=PAPER
    ),
    Variant(
        "heatmap paper, shared projections, no centring, cosine/0.2",
        f"{SHARED} × {CENTRING}, {SOFTER}",
        SHARED_SOFT,
        heatmap=PAPER,
    ),
    Variant(
        "heatmap paper, shared projections, no centring, cosine/0.2, d=256",
        f"{SHARED} × {CENTRING}, {SOFTER}, embeddings of width 256",
        {**SHARED_SOFT, "dim": 256},
        heatmap=PAPER,
    ),
    Variant(
        "shared projections, no centring, cosine/0.2",
        f"f' = f and g' = g × {CENTRING}, {SOFTER}, global heatmaps",
        SHARED_SOFT,
    ),
    Variant(
        "heatmap paper, shared projections, no centring, cosine/0.2, same-video negatives",
        f"{SHARED} × {CENTRING}, {SOFTER}, {SAME_VIDEO}",
        SHARED_SOFT,
        {"negatives": "same-video"},
        heatmap=PAPER,
    ),
    Variant(
        "heatmap rollout, shared projections, no centring, cosine/0.2",
        f"local-branch heatmaps (attention rollout), f' = f and g' = g × {CENTRING}, {SOFTER}",
        SHARED_SOFT,
        heatmap="rollout",
    ),
    Variant("paper inference", PROTOCOL, ground_options=PAPER_INFERENCE),
    Variant(
        "paper protocol",
        f"{PROTOCOL}, dot-product cross-attention, local-branch heatmaps",
        {"cross_logits": "dot"},
        heatmap=PAPER,
        ground_options=PAPER_INFERENCE,
    ),
)
QUICK_VARIANTS = ("default", "select none", "loss global", "heatmap paper")

FULL = DemoPreset(
    name="ablation",
    synth=SynthConfig.quick(train_videos=24, test_videos=8, min_duration=30, max_duration=40),
    model_options={"dim": 64, "frames_u": 8, "frames_t": 4},
    steps=80,
    batch_size=32,
    local_chunk=8,
)
QUICK = DemoPreset(
    name="ablation-quick",
    synth=SynthConfig.quick(train_videos=8, test_videos=2, min_duration=20, max_duration=30),
    model_options={"dim": 32, "frames_u": 8, "frames_t": 4},
    steps=10,
    batch_size=16,
    local_chunk=4,
)


@dataclass(frozen=True)
class Run:
    """One variant trained with one seed, and where its folder and result file go."""

    variant: Variant
    seed: int
    settings: DemoPreset
    folder: Path
    result: Path

    @property
    def label(self) -> str:
        """``<variant> s<seed>``."""
        return f"{self.variant.name} s{self.seed}"


def plan(out: Path, base: DemoPreset, variants: list[Variant], seeds: int) -> list[Run]:
    """Every (seed, variant) run, seed by seed so that an interrupted call has whole seeds."""
    runs = []
    for seed in range(seeds):
        for variant in variants:
            settings = replace(
                base,
                name=f"{base.name}-{variant.name.replace(' ', '-')}",
                model_options={**base.model_options, **variant.model_options},
                train_options={**base.train_options, **variant.train_options, "seed": seed},
                heatmap=variant.heatmap,
                **variant.ground_options,
            )
            stem = f"{variant.name.replace(' ', '-').replace('/', '-')}-s{seed}"  # one file name
            runs.append(Run(variant, seed, settings, out / "runs" / stem, out / "results" / f"{stem}.json"))
    return runs


def settings_dict(settings: DemoPreset) -> dict:
    """The preset as its JSON round trip, for comparison with a stored result. The grounding's
    ``tau`` and ``smooth`` appear only where a variant sets them, so that results stored before
    the presets had them still match."""
    data = json.loads(json.dumps(asdict(settings)))
    for preset_field in fields(DemoPreset):
        if preset_field.name in ("tau", "smooth") and data[preset_field.name] == preset_field.default:
            del data[preset_field.name]
    return data


def stored_result(run: Run) -> dict | None:
    """The finished result of ``run``, or None. A result with other settings is an error."""
    if not run.result.is_file():
        return None
    saved = json.loads(run.result.read_text())
    if saved["settings"] != settings_dict(run.settings):
        raise SystemExit(f"{run.result} was written with other settings; remove it or choose another --out")
    return saved


def prepare_data(data: Path, base: DemoPreset, progress: Progress) -> None:
    """Renders the benchmark and extracts its features into ``data`` once: a one-step demo
    (``run_demo`` then reuses both wherever they are copied)."""
    task = progress.add_task("benchmark and features", total=None)

    def on_stage(stage: str, done: int, total: int, detail: str) -> None:
        progress.update(task, completed=done, total=total, description=f"data: {stage} {detail}")

    run_demo(data, replace(base, name=f"{base.name}-data", steps=1), on_stage=on_stage)
    progress.remove_task(task)


def copy_once(source: Path, target: Path) -> None:
    """Copies the folder ``source`` to ``target`` unless it is there (through a temporary name,
    so that an interrupted copy is never taken for a finished one)."""
    if target.exists():
        return
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    partial.rename(target)


def execute(run: Run, data: Path, threads: int) -> dict:
    """Trains and scores ``run`` in this process with ``threads`` torch threads and writes its
    result file; returns the result."""
    import torch

    torch.set_num_threads(threads)
    run.folder.mkdir(parents=True, exist_ok=True)
    for part in ("synth", "features", "test-features"):
        copy_once(data / part, run.folder / part)
    begin = time.perf_counter()
    report = run_demo(run.folder, run.settings)
    result = {
        "variant": run.variant.name,
        "seed": run.seed,
        "settings": settings_dict(run.settings),
        **{name: report.row(name).metrics for name in REPORT_ROWS},
        "first_loss": report.first_loss,
        "final_loss": report.final_loss,
        "failed_videos": report.failed_videos,
        "stage_seconds": report.stage_seconds,
        "wall_s": round(time.perf_counter() - begin, 1),
        "torch_threads": threads,
    }
    run.result.parent.mkdir(parents=True, exist_ok=True)
    run.result.write_text(json.dumps(result, indent=2) + "\n")
    return result


def summarise(values: list[float]) -> dict:
    """Mean, sample standard deviation (None for one value) and the values."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
    }


def table_rows(variants: list[Variant], results: list[dict]) -> list[dict]:
    """One row per variant (its trained scores over the seeds), then the :data:`REFERENCES`."""
    rows = []
    for variant in variants:
        mine = [result for result in results if result["variant"] == variant.name]
        if mine:
            rows.append(_row(variant.name, variant.tests, mine, METRICS))
    defaults = [result for result in results if result["variant"] == VARIANTS[0].name]
    if defaults:
        for name, (tests, columns) in REFERENCES.items():
            rows.append(_row(name, tests, defaults, columns))
    return rows


def _row(name: str, tests: str, results: list[dict], columns: dict) -> dict:
    """A table row; a column none of whose runs has the score (a control the benchmark cannot
    run) is left out."""
    metrics = {}
    for column, (row, key) in columns.items():
        values = [result[row][key] for result in results if result[row][key] is not None]
        if values:
            metrics[column] = summarise(values)
    return {"variant": name, "tests": tests, "seeds": len(results), "metrics": metrics}


def _paired(values: list[float]) -> dict:
    """:func:`summarise` of per-seed differences, with how many of them are below zero."""
    return {**summarise(values), "lower": sum(value < 0 for value in values)}


def _pointing(result: dict, row: str) -> float | None:
    return result[row]["pointing_game"]


def paired_rows(variants: list[Variant], results: list[dict]) -> list[dict]:
    """Per-seed differences of each variant from the default run of the same seed (columns of
    :data:`PAIRED`), and within each run the two controls of its read-out given true timing:
    pointing minus the best model-free prior (the best prior per seed, true timing) and minus
    the wrong query (another step of the same video)."""
    by_seed = {r["seed"]: r for r in results if r["variant"] == VARIANTS[0].name}
    rows = []
    for variant in variants:
        mine = [r for r in results if r["variant"] == variant.name]
        if not mine:
            continue
        metrics = {}
        for column in PAIRED:
            row, key = METRICS[column]
            diffs = [
                r[row][key] - by_seed[r["seed"]][row][key]
                for r in mine
                if r["seed"] in by_seed
                and r[row][key] is not None
                and by_seed[r["seed"]][row][key] is not None
            ]
            if diffs and variant.name != VARIANTS[0].name:
                metrics[f"Δ {column}"] = _paired(diffs)
        true_timing = [r for r in mine if _pointing(r, "trained_true_timing") is not None]
        over_prior = [
            _pointing(r, "trained_true_timing") - max(_pointing(r, prior) for prior in PRIOR_ROWS)
            for r in true_timing
        ]
        over_wrong = [
            _pointing(r, "trained_true_timing") - _pointing(r, "trained_wrong_query")
            for r in true_timing
            if _pointing(r, "trained_wrong_query") is not None
        ]
        if over_prior:
            metrics["− best prior"] = _paired(over_prior)
        if over_wrong:
            metrics["− wrong query"] = _paired(over_wrong)
        rows.append({"variant": variant.name, "seeds": len(mine), "metrics": metrics})
    return rows


def paired_markdown(rows: list[dict]) -> str:
    """The paired table: mean ± std of each difference and on how many seeds it is negative."""
    columns = [f"Δ {column}" for column in PAIRED] + ["− best prior", "− wrong query"]
    lines = ["| variant | seeds | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            metric = row["metrics"].get(column)
            if metric is None:
                cells.append("–")
                continue
            spread = f" ± {metric['std']:.1f}" if metric["std"] is not None else ""
            mean = round(metric["mean"], 1) + 0.0  # no "-0.0"
            cells.append(f"{mean:+.1f}{spread} ({metric['lower']}/{len(metric['values'])} < 0)")
        lines.append(f"| {row['variant']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """The table: variant, what it tests, seeds, then mean ± std of each of :data:`METRICS`
    (– where a reference row has no such score)."""
    lines = [
        "| variant | tests | seeds | " + " | ".join(METRICS) + " |",
        "|---|---|---:|" + "---:|" * len(METRICS),
    ]
    for row in rows:
        cells = []
        for column in METRICS:
            metric = row["metrics"].get(column)
            if metric is None:
                cells.append("–")
                continue
            spread = f" ± {metric['std']:.1f}" if metric["std"] is not None else ""
            cells.append(f"{metric['mean']:.1f}{spread}")
        lines.append(f"| {row['variant']} | {row['tests']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ablation of frame selection, losses and attention stack on the synthetic "
        "benchmark: mean ± std over training seeds, as a markdown table."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results/ablation"),
        help="folder of the runs and their results (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds", type=int, default=2, help="training seeds 0..N-1 per variant (default: %(default)s)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs at once, each with cores/jobs torch threads (default: %(default)s)",
    )
    parser.add_argument(
        "--backbone",
        default="tiny",
        help="visual backbone of every run, as `stg extract --backbone` with its "
        "default weights (default: %(default)s)",
    )
    parser.add_argument(
        "--preset",
        choices=("ablation", "demo"),
        default="ablation",
        help="settings of every run: the ablation's (24 + 8 videos of 30-40 s, "
        "d=64, 80 steps) or `stg demo`'s quick preset (24 + 30 videos, d=128, "
        "100 steps) (default: %(default)s)",
    )
    parser.add_argument(
        "--test-videos",
        type=int,
        default=None,
        help="test videos of the benchmark (default: the preset's). The training videos stay the "
        "same (each video is planned from its own seed), so more test videos score the same "
        "models on more annotated seconds",
    )
    parser.add_argument(
        "--train-videos",
        type=int,
        default=None,
        help="training videos of the benchmark (default: the preset's); the first ones are the "
        "preset's and the test videos stay the same",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps of every run (default: the preset's)"
    )
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=None,
        help="a variant to run, by its name (repeat for several; default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {len(QUICK_VARIANTS)} variants, {QUICK.steps} steps on a tiny benchmark",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the runs and the table as JSON to this file"
    )
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")
    for name in ("test_videos", "train_videos", "steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    begin = time.perf_counter()
    if args.quick:
        base, out = QUICK, args.out / "quick"
    elif args.preset == "demo":
        # the demo's sizes with ModelConfig's defaults (`tiny` has no settings of its own): each
        # variant sets the model options it tests
        base, out = replace(preset("quick", backbone="tiny"), name="ablation-demo"), args.out / "demo"
    else:
        base, out = FULL, args.out / "full"
    base = replace(base, backbone=args.backbone)
    # a changed benchmark or run length gets a folder of its own: <preset>-test30-train96-steps400
    for name, suffix in (("test_videos", "test"), ("train_videos", "train"), ("steps", "steps")):
        value = getattr(args, name)
        if value is None:
            continue
        if name == "steps":
            base = replace(base, steps=value)
        else:
            base = replace(base, synth=replace(base.synth, **{name: value}))
        out = out.with_name(f"{out.name}-{suffix}{value}")
    chosen = QUICK_VARIANTS if args.quick else None
    if args.variants is not None:
        chosen = tuple(name.strip() for name in args.variants)
        unknown = set(chosen) - {variant.name for variant in VARIANTS}
        if unknown or VARIANTS[0].name not in chosen:
            raise SystemExit(
                f"--variant: unknown {sorted(unknown)} or no 'default' (the reference "
                "of the paired differences)"
            )
    variants = [v for v in VARIANTS if chosen is None or v.name in chosen]
    runs = plan(out, base, variants, args.seeds)
    results = {run.label: stored for run in runs if (stored := stored_result(run)) is not None}
    todo = [run for run in runs if run.label not in results]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    failures: dict[str, str] = {}

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task("runs", total=len(runs), completed=len(results))
        if todo:
            prepare_data(out / "data", base, progress)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures: dict[Future, Run] = {
                pool.submit(execute, run, out / "data", threads): run for run in todo
            }
            for future in as_completed(futures):
                run = futures[future]
                try:
                    results[run.label] = future.result()
                except Exception as error:
                    failures[run.label] = f"{type(error).__name__}: {error}"
                progress.update(task, advance=1, description=f"runs (last: {run.label})")

    wall = time.perf_counter() - begin
    ordered = [results[run.label] for run in runs if run.label in results]
    rows = table_rows(variants, ordered)
    print(markdown(rows))
    paired = paired_rows(variants, ordered)
    print(
        "\nPaired by training seed: Δ = variant − default; given true timing, the read-out's "
        "pointing − the best model-free prior and − the wrong query; (k/n < 0) = on k of n "
        "seeds below zero\n"
    )
    print(paired_markdown(paired))
    print(
        f"\n{len(todo) - len(failures)} runs trained, {len(runs) - len(todo)} reused, "
        f"{len(failures)} failed; {args.jobs} at once with {threads} torch thread(s) each; "
        f"wall {wall / 60:.1f} min; runs in {out}"
    )
    for label, message in failures.items():
        print(f"failed: {label}: {message}", file=sys.stderr)
    if args.json is not None:
        from stg_cli.bench.common import machine_info

        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "quick": args.quick,
            "preset": "quick" if args.quick else args.preset,
            "seeds": args.seeds,
            "jobs": args.jobs,
            "settings": settings_dict(base),
            "machine": asdict(machine_info()),
            "wall_s": round(wall, 1),
            "trained_runs": len(todo) - len(failures),
            "reused_runs": len(runs) - len(todo),
            "runs": ordered,
            "failures": failures,
            "table": rows,
            "paired": paired,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
