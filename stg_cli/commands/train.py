"""``stg train``: train the global-local grounding model on a feature store."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from stg_cli import terminal
from stg_cli.defaults import ATTENTION_STACKS, DEFAULT_EPOCHS, SELECTION_MODES
from stg_cli.terminal import escape
from stg_cli.train.config import model_defaults, train_defaults

if TYPE_CHECKING:
    from stg_cli.train import TrainResult
    from stg_cli.train.events import TrainEvent


TRAIN = train_defaults()
MODEL = model_defaults()


def _default(value: object) -> str:
    """How --help shows a default that comes from the settings' dataclasses."""
    return "on" if value is True else "off" if value is False else str(value)


def command(
    features: Path = typer.Argument(..., help="Feature store folder written by stg extract."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, metrics, export)."),
    settings: Path | None = typer.Option(
        None,
        "--config",
        metavar="FILE",
        help="A TOML settings file with \\[train] and \\[model] tables (the options below, with _ "
        "for -); an option given here overrides the file.",
    ),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps (overrides --epochs)."),
    epochs: float | None = typer.Option(
        None,
        "--epochs",
        help=f"Passes over the samples (default {DEFAULT_EPOCHS:g} when --steps is not given).",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        help="Clips per step over all processes.",
        show_default=_default(TRAIN["batch_size"]),
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak AdamW learning rate.", show_default=_default(TRAIN["lr"])
    ),
    weight_decay: float | None = typer.Option(
        None, "--weight-decay", show_default=_default(TRAIN["weight_decay"])
    ),
    warmup: float | None = typer.Option(
        None,
        "--warmup",
        help="Warm-up: fraction of steps (<1) or steps.",
        show_default=_default(TRAIN["warmup"]),
    ),
    grad_clip: float | None = typer.Option(
        None, "--grad-clip", help="Max gradient norm (0: off).", show_default=_default(TRAIN["grad_clip"])
    ),
    dim: int | None = typer.Option(
        None, "--dim", help="Joint embedding width d.", show_default=_default(MODEL["dim"])
    ),
    frames_u: int | None = typer.Option(
        None, "--frames-u", help="Candidate frames U per window.", show_default=_default(MODEL["frames_u"])
    ),
    frames_t: int | None = typer.Option(
        None, "--frames-t", help="Selected frames T.", show_default=_default(MODEL["frames_t"])
    ),
    select: str | None = typer.Option(
        None, "--select", help="|".join(SELECTION_MODES), show_default=_default(MODEL["select"])
    ),
    loss: str | None = typer.Option(
        None, "--loss", help="both|global|local", show_default=_default(TRAIN["loss"])
    ),
    attention: str | None = typer.Option(
        None, "--attention", help="|".join(ATTENTION_STACKS), show_default=_default(MODEL["attention"])
    ),
    cross_logits: str | None = typer.Option(
        None,
        "--cross-logits",
        help="Cross-attention logits: cosine (/temperature) or dot (/sqrt(d)).",
        show_default=_default(MODEL["cross_logits"]),
    ),
    cross_temperature: float | None = typer.Option(
        None, "--cross-temperature", show_default=_default(MODEL["cross_temperature"])
    ),
    local_chunk: int | None = typer.Option(
        None, "--local-chunk", help="Clips per local-loss chunk.", show_default=_default(TRAIN["local_chunk"])
    ),
    negatives: str | None = typer.Option(
        None,
        "--negatives",
        help="any: shuffled batches; same-video: each video's clips one after another, so a "
        "clip's local negatives are other steps of its own video.",
        show_default=_default(TRAIN["negatives"]),
    ),
    temperature: float | None = typer.Option(
        None, "--temperature", help="NCE temperature.", show_default=_default(TRAIN["temperature"])
    ),
    margin: float | None = typer.Option(
        None, "--margin", help="NCE margin δ (logit units).", show_default=_default(TRAIN["margin"])
    ),
    min_time: float | None = typer.Option(
        None, "--min-time", help="Captions widened to this (s).", show_default=_default(TRAIN["min_time"])
    ),
    gated: bool | None = typer.Option(
        None, "--gated/--no-gated", help="Gated projection units.", show_default=_default(MODEL["gated"])
    ),
    center_video: bool | None = typer.Option(
        None,
        "--center-video/--no-center-video",
        help="Subtract each video's mean features (what stays the same the whole video), in "
        "training and grounding.",
        show_default=_default(MODEL["center_video"]),
    ),
    local_projections: str | None = typer.Option(
        None,
        "--local-projections",
        help="own: the local branch's own f', g' (the paper); shared: f' = f, g' = g.",
        show_default=_default(MODEL["local_projections"]),
    ),
    seed: int | None = typer.Option(None, "--seed", show_default=_default(TRAIN["seed"])),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    amp: bool | None = typer.Option(
        None, "--amp/--no-amp", help="bfloat16 autocast (default: on for CUDA only)."
    ),
    checkpoint_every: int | None = typer.Option(
        None,
        "--checkpoint-every",
        help="Steps between checkpoints.",
        show_default=_default(TRAIN["checkpoint_every"]),
    ),
    keep: int | None = typer.Option(
        None, "--keep", help="Step checkpoints kept (plus best.pt).", show_default=_default(TRAIN["keep"])
    ),
    log_every: int | None = typer.Option(
        None,
        "--log-every",
        help="Steps between metrics.jsonl lines.",
        show_default=_default(TRAIN["log_every"]),
    ),
    eval_split: Path | None = typer.Option(
        None,
        "--eval",
        help="A labelled split (videos/ + annotations/, e.g. a synth benchmark's test/) to "
        "ground and score at every checkpoint and at the end, into RUN/eval.jsonl.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out with its saved settings."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Train on FEATS; under torchrun every process trains on its share of each batch.

    Settings come from their defaults, then --config FILE, then the options given here.
    """
    from stg_cli import train as train_lib
    from stg_cli.train.config import resolve_settings
    from stg_cli.train.events import CheckpointSaved, Evaluated, PriorsScored, RunStarted, StepLog

    config, model_options = resolve_settings(
        settings,
        dict(
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup=warmup,
            grad_clip=grad_clip,
            seed=seed,
            local_chunk=local_chunk,
            negatives=negatives,
            loss=loss,
            temperature=temperature,
            margin=margin,
            min_time=min_time,
            amp=amp,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
            keep=keep,
            eval_split=None if eval_split is None else str(eval_split.resolve()),
        ),
        dict(
            dim=dim,
            frames_u=frames_u,
            frames_t=frames_t,
            select=select,
            attention=attention,
            gated=gated,
            cross_logits=cross_logits,
            cross_temperature=cross_temperature,
            center_video=center_video,
            local_projections=local_projections,
        ),
    )
    main = int(os.environ.get("RANK", "0")) == 0
    console = terminal.console(stderr=True, quiet=not main)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=True,
        disable=not main,
    )
    task = progress.add_task("train", total=None, status="")

    def on_event(event: TrainEvent) -> None:
        if isinstance(event, RunStarted):
            progress.update(task, total=event.total_steps, completed=event.start_step)
            console.print(
                f"training on {event.samples} clips, {event.total_steps} steps "
                f"({event.steps_per_epoch} per epoch), {event.world_size} process(es) "
                f"on {event.device}"
                + (", bf16 autocast" if event.amp else "")
                + (f", resuming after step {event.start_step}" if event.start_step else ""),
                highlight=False,
            )
        elif isinstance(event, StepLog):
            parts = [f"loss {event.loss:.3f}"]
            if event.loss_global is not None and event.loss_local is not None:
                parts.append(f"(g {event.loss_global:.3f} l {event.loss_local:.3f})")
            parts += [
                f"lr {event.lr:.2e}",
                f"{event.clips_per_s:.0f} clips/s",
                f"ETA {_duration(event.eta_s)}",
            ]
            progress.update(task, completed=event.step, status=" ".join(parts))
        elif isinstance(event, CheckpointSaved):
            progress.console.print(f"checkpoint {escape(str(event.path))}", highlight=False)
        elif isinstance(event, Evaluated):
            progress.console.print(eval_line(event.to_dict()), highlight=False)
        elif isinstance(event, PriorsScored):
            progress.console.print(priors_line(event.pointing), highlight=False)

    try:
        with progress:
            result = train_lib.train(
                features, out, model_options, config, resume=resume, device=device, on_event=on_event
            )
    except train_lib.TrainingInterrupted as stop:
        console.print(
            f"[yellow]interrupted[/yellow] at step {stop.result.steps}; checkpoint "
            f"{escape(str(stop.result.checkpoint))}; continue with --resume",
            highlight=False,
        )
        raise typer.Exit(130) from None
    if not main:
        return
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    render(result, terminal.console())


def render(result: TrainResult, console: Console) -> None:
    """A small summary table of a finished run."""
    table = Table(title="stg train", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    loss = "-" if result.final_loss is None else f"{result.final_loss:.4f}"
    if result.first_loss is not None and result.final_loss is not None:
        loss = f"{result.first_loss:.4f} → {result.final_loss:.4f}"
    table.add_row("steps", f"{result.steps} / {result.total_steps}")
    table.add_row("loss (first → last step)", loss)
    table.add_row("clips/s", f"{result.clips_per_s:.1f} ({result.world_size} process(es))")
    table.add_row("time", _duration(result.elapsed_s))
    table.add_row("checkpoint", escape(str(result.checkpoint)))
    table.add_row("export", escape(str(result.export)))
    console.print(table)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


EVAL_COLUMNS = {
    "temporal_iou": "temporal IoU",
    "iou_point": "IoU+Point",
    "map_mean": "mAP",
    "pointing_game": "pointing",
    "pointing_true_timing": "pointing (true timing)",
    "pointing_wrong_query": "wrong query",
    "pointing_distractor_query": "distractor query",
}


def priors_line(pointing: dict[str, float]) -> str:
    """The model-free priors' pointing game (percent, given true timing) as one line."""
    scores = ", ".join(f"{kind.replace('_', ' ')} {value:.1f}" for kind, value in pointing.items())
    return f"model-free priors on the eval split (pointing, true timing): {scores}"


def eval_line(row: dict) -> str:
    """One evaluation as a line: step, the scores (percent) and the detection threshold."""
    scores = ", ".join(
        f"{title} {row[key]:.1f}" for key, title in EVAL_COLUMNS.items() if row.get(key) is not None
    )
    failed = f", {row['failed']} video(s) failed" if row.get("failed") else ""
    return f"eval at step {row['step']}: {scores}; τ {row['tau']:.3f}{failed}"
