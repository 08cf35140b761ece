"""``stg demo``: the whole pipeline on a synthetic narrated benchmark, as library calls.

Stages: ``synth`` (render train/test videos, captions, ground truth) → ``extract`` (the
training videos with ``DemoPreset.backbone``, ``effnet-lite0`` by default, and word2vec
trained on their captions, then the test videos with the same encoders) → ``train`` →
``ground`` the test
videos with the trained model (the first one also with ``--viz``) and with the same model
untrained (its seeded initialisation with the same input statistics), each untrimmed and
trimmed, and the wrong-query controls → ``score`` them and the model-free priors on the test
ground truth.

Folder layout under ``out``: ``synth/``, ``features/`` (training videos), ``test-features/``
(test videos, read by the grounding), ``run/`` (training run),
``untrained/`` (the untrained export), ``ground/<row>/`` per grounded row (the controls in
``ground/trained_controls/``) and ``report.json``.

Interrupted demos continue where they stopped: a finished synth benchmark with the same settings
is reused, extraction skips stored videos, training resumes from its last checkpoint (a finished
run is reused). Grounding and scoring are always redone (seconds).

The rows of the report, first where the model finds when, what and where on its own:

- ``trained``: the model after training;
- ``untrained``: the same architecture at its initialisation, to show what training adds;
- ``uniform``: temporal IoU only, the transcript split evenly over each video's frames
  (:func:`stg_cli.metrics.baselines.uniform_temporal`), the prior that knows the steps and their
  order (which the temporal IoU's alignment is given too) but not when they happen;

then where the true segments and labels are given (``ground_seg.json``, trimmed grounding) and
only where is predicted, so that the spatial part is compared on equal terms:

- ``trained_true_timing`` and ``untrained_true_timing``: the two models' heatmaps;
- ``trained_wrong_query`` and ``trained_distractor_query``: the wrong-query controls
  (:func:`stg_cli.runs.evaluation.query_controls`): the trained model asked, for each true
  segment, another step of the same video or the concurrent distractor action's label, and
  scored against the true box. A model that grounds the query drops here; one that points at
  whatever moves does not;
- the model-free priors of :mod:`stg_cli.metrics.baselines` (``centre``, ``random``, ``motion``,
  ``centred_energy``): what knowing when and what, but not where, scores.

The true-timing rows have no temporal IoU (their timing is not predicted); the controls report
the pointing game only. ``DemoReport.notes`` starts with a warning when a prior's pointing game
comes within 5 points of the trained model's.

Detection threshold: each model grounds with the threshold τ calibrated on its training clips
(:mod:`stg_cli.train.calibration`, what ``stg ground`` does without ``--tau``; ``DemoPreset.tau``
fixes one instead), and the temporal IoU's alignment gives background frames the same score τ.
Models trained for minutes on a few dozen videos give frame–query cosines far below the paper's
fixed 0.5 (contrastive training only needs positives to beat negatives), so 0.5 would detect
almost nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stg_cli import files
from stg_cli.defaults import DEFAULT_SMOOTH, DEMO_BACKBONE, DEMO_TEXT
from stg_cli.errors import UserError
from stg_cli.features.extract import ExtractOptions, extract
from stg_cli.ground.pipeline import Grounder, GroundSettings
from stg_cli.metrics.baselines import PRIORS, close_priors_note
from stg_cli.runs.evaluation import (
    SPATIAL_METRICS,
    TEMPORAL_METRIC,
    LabelledSplit,
    ground_split,
    query_controls,
    score_split,
    split_priors,
    uniform_split_iou,
)
from stg_cli.synth import generate
from stg_cli.synth.config import SynthConfig
from stg_cli.train import TrainConfig, TrainResult, initial_export, train
from stg_cli.train.events import StepLog, TrainEvent

PRESETS = ("quick", "full")
#: test videos of the quick preset. Six (synth's quick set) were too few to compare a model
#: with the priors: on them centred energy pointed at 18.8 %, on 30 at 26.0 %, and a model
#: 14.5 points above it on the six was 3.1 above it on the 30 (benchmarks/RESULTS.md).
QUICK_TEST_VIDEOS = 30
#: the model settings the demo trains with a backbone, where they are not
#: :class:`stg_cli.models.ModelConfig`'s defaults: those measured to localise best with it
#: (benchmarks/RESULTS.md, "The same models on 30 test videos"). With ``effnet-lite0``: the
#: local branch shares f and g (its paper chain, the default read-out of such a model, then
#: points as often as the activation map and depends more on the query), no video centring (it
#: removes the objects' appearance the queries name) and softer cross-attention (cosine / 0.2).
#: With ``tiny`` none of these helps.
BACKBONE_MODEL_OPTIONS = {
    "effnet-lite0": {"local_projections": "shared", "center_video": False, "cross_temperature": 0.2}
}
UNTRIMMED_ROWS = ("trained", "untrained")
CONTROL_ROWS = {
    "pointing_wrong_query": "trained_wrong_query",
    "pointing_distractor_query": "trained_distractor_query",
}
STAGES = ("synth", "extract", "train", "ground", "score")

StageCallback = Callable[[str, int, int, str], None]


@dataclass(frozen=True)
class DemoPreset:
    """Settings of one demo size: the benchmark, the model and the training run.

    ``model_options`` are :class:`stg_cli.models.ModelConfig` fields, ``train_options`` further
    :class:`stg_cli.train.TrainConfig` fields (e.g. ``loss``, ``seed``) for ablations,
    ``heatmap`` the grounding's heatmap mode (``stg ground --heatmap``; ``auto``: the trained
    model's default read-out), ``tau`` and ``smooth``
    its detection threshold and label smoothing (``stg ground --tau/--smooth``; None: each
    model's calibrated τ), and ``backbone`` and ``text`` the encoders of ``stg extract
    --backbone/--text`` (their default weights).
    """

    name: str
    synth: SynthConfig
    model_options: dict
    steps: int
    batch_size: int
    local_chunk: int
    train_options: dict = field(default_factory=dict)
    heatmap: str = "auto"
    backbone: str = "tiny"
    text: str = "word2vec"
    tau: float | None = None
    smooth: int = DEFAULT_SMOOTH


def preset(name: str, backbone: str = DEMO_BACKBONE, text: str = DEMO_TEXT) -> DemoPreset:
    """``quick`` (the default: ≤ 5 minutes on a 2-core CPU) or ``full`` (the larger benchmark),
    with ``backbone`` and ``text`` and the model settings of :data:`BACKBONE_MODEL_OPTIONS`.

    Both train for about 16 passes over their clips (quick: 200 clips, 100 steps of 32; full:
    about 2,400 clips, 600 steps of 64): on the quick benchmark the test scores peak there and
    fall with longer training as the model starts to memorise its few videos
    (``stg train --eval`` shows it).

    Raises:
        UserError: for another name.
    """
    tuned = BACKBONE_MODEL_OPTIONS.get(backbone, {})
    if name == "quick":
        return DemoPreset(
            name="quick",
            synth=SynthConfig.quick(test_videos=QUICK_TEST_VIDEOS),
            model_options={"dim": 128, "frames_u": 8, "frames_t": 4, **tuned},
            steps=100,
            batch_size=32,
            local_chunk=8,
            backbone=backbone,
            text=text,
        )
    if name == "full":
        return DemoPreset(
            name="full",
            synth=SynthConfig.full(),
            model_options={"dim": 256, "frames_u": 16, "frames_t": 8, **tuned},
            steps=600,
            batch_size=64,
            local_chunk=16,
            backbone=backbone,
            text=text,
        )
    raise UserError(f"unknown demo preset {name!r}; choose from {', '.join(PRESETS)}")


@dataclass
class DemoRow:
    """Scores of one model (percent; None where the row has no such metric)."""

    name: str
    metrics: dict[str, float | None]


@dataclass
class DemoReport:
    """What :func:`run_demo` produced (``heatmap``: the read-out the models were grounded with)."""

    out: Path
    preset: str
    rows: list[DemoRow]
    stage_seconds: dict[str, float]
    overlay: Path | None
    timeline: Path | None
    train_steps: int
    final_loss: float | None
    first_loss: float | None
    test_videos: int
    failed_videos: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    backbone: str = "tiny"
    text: str = "word2vec"
    heatmap: str = "global"

    def row(self, name: str) -> DemoRow:
        return next(row for row in self.rows if row.name == name)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("out", "overlay", "timeline"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


def run_demo(
    out: Path,
    settings: str | DemoPreset = "quick",
    on_stage: StageCallback | None = None,
    device: str = "cpu",
) -> DemoReport:
    """Runs every stage into ``out`` (see the module docstring) and writes ``report.json``.

    ``settings``: a preset name (:data:`PRESETS`) or a :class:`DemoPreset`.

    ``on_stage(stage, done, total, detail)`` reports progress within each stage of
    :data:`STAGES` (``done == total`` when it ends).

    Raises:
        UserError: a stage could not run (its message says which).
    """
    settings = preset(settings) if isinstance(settings, str) else settings
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report_stage = on_stage or (lambda stage, done, total, detail: None)
    seconds: dict[str, float] = {}

    begin = time.perf_counter()
    synth_dir = _synth(out / "synth", settings.synth, report_stage)
    seconds["synth"] = time.perf_counter() - begin

    begin = time.perf_counter()
    features, test_features = _extract(synth_dir, out, settings, report_stage, device)
    seconds["extract"] = time.perf_counter() - begin

    begin = time.perf_counter()
    trained = _train(features, out / "run", settings, report_stage, device)
    seconds["train"] = time.perf_counter() - begin

    begin = time.perf_counter()

    untrained_export = initial_export(
        features, out / "untrained", settings.model_options, _train_config(settings)
    )
    split = LabelledSplit.find(synth_dir / "test")
    grounding = [
        ("trained", trained.export, False),
        ("untrained", untrained_export, False),
        ("trained_true_timing", trained.export, True),
        ("untrained_true_timing", untrained_export, True),
    ]
    failed: list[str] = []
    thresholds: dict[str, float] = {}
    grounders = {
        export: Grounder(export, features=test_features, device=device)
        for export in (trained.export, untrained_export)
    }
    for done, (name, export, trimmed) in enumerate(grounding):
        report_stage("ground", done, len(grounding), name.replace("_", " "))
        row_settings = GroundSettings(
            heatmap=settings.heatmap, trimmed=trimmed, tau=settings.tau, smooth=settings.smooth
        )
        row_failed, thresholds[name] = ground_split(
            grounders[export], split, out / "ground" / name, row_settings, viz_first=name == "trained"
        )
        failed += row_failed
    report_stage("ground", len(grounding), len(grounding), "controls")
    controls, control_failed = query_controls(
        grounders[trained.export],
        split,
        out / "ground" / "trained_controls",
        GroundSettings(heatmap=settings.heatmap, trimmed=True),
    )
    failed += control_failed
    report_stage("ground", len(grounding), len(grounding), "")
    seconds["ground"] = time.perf_counter() - begin

    begin = time.perf_counter()
    rows, notes = _score_rows(
        split, out, thresholds, controls, settings.model_options.get("grid", (7, 7)), report_stage
    )
    seconds["score"] = time.perf_counter() - begin

    overlays = sorted((out / "ground" / "trained").glob("*.overlay.mp4"))
    timelines = sorted((out / "ground" / "trained").glob("*.timeline.png"))
    report = DemoReport(
        out=out,
        preset=settings.name,
        rows=rows,
        stage_seconds={name: round(value, 2) for name, value in seconds.items()},
        overlay=overlays[0] if overlays else None,
        timeline=timelines[0] if timelines else None,
        train_steps=trained.steps,
        final_loss=trained.final_loss,
        first_loss=trained.first_loss,
        test_videos=len(list(split.videos.glob("*.mp4"))),
        failed_videos=sorted(set(failed)),
        thresholds={name: round(thresholds[name], 4) for name in UNTRIMMED_ROWS},
        notes=notes,
        backbone=settings.backbone,
        text=settings.text,
        heatmap=grounders[trained.export].heatmap_mode(GroundSettings(heatmap=settings.heatmap)),
    )
    files.write_json(out / "report.json", report.to_dict())
    return report


def _synth(target: Path, config: SynthConfig, report_stage: StageCallback) -> Path:

    manifest = target / "synth.json"
    if manifest.is_file():
        saved = json.loads(manifest.read_text()).get("config")
        if saved == config.to_dict():
            report_stage("synth", 1, 1, "reused")
            return target

    def progress(done: int, total: int, video_id: str) -> None:
        report_stage("synth", done, total, video_id)

    generate(target, config, progress=progress, overwrite=True)
    return target


def _extract(
    synth_dir: Path, out: Path, settings: DemoPreset, report_stage: StageCallback, device: str
) -> tuple[Path, Path]:
    """Extracts the training videos into ``out/features`` (their captions train word2vec), then
    the test videos with that text encoder into ``out/test-features``; returns both stores.
    The test store lets the six groundings of each test video read its features instead of
    running the backbone six times."""

    splits = [synth_dir / split / "videos" for split in ("train", "test")]
    total = sum(len(list(videos.glob("*.mp4"))) for videos in splits)
    done = 0

    def on_video(result) -> None:
        nonlocal done
        done += 1
        report_stage("extract", done, total, result.video_id)

    train_store, test_store = out / "features", out / "test-features"
    summary = extract(
        [splits[0]],
        synth_dir / "train" / "captions.json",
        train_store,
        ExtractOptions(backbone=settings.backbone, text=settings.text, device=device),
        on_video=on_video,
    )
    if summary.manifest_videos == 0:
        raise UserError(f"no training video could be extracted into {train_store}")
    extract(
        [splits[1]],
        synth_dir / "test" / "captions.json",
        test_store,
        ExtractOptions(
            backbone=settings.backbone,
            text=settings.text,
            text_weights=train_store / "text_encoder",
            device=device,
        ),
        on_video=on_video,
    )
    report_stage("extract", total, total, "")
    return train_store, test_store


def _train_config(settings: DemoPreset):

    return TrainConfig(
        steps=settings.steps,
        batch_size=settings.batch_size,
        local_chunk=settings.local_chunk,
        log_every=max(1, settings.steps // 30),
        checkpoint_every=max(1, settings.steps // 4),
        **settings.train_options,
    )


def _train(features: Path, run: Path, settings: DemoPreset, report_stage: StageCallback, device: str):

    summary = run / "summary.json"
    if summary.is_file():
        saved = json.loads(summary.read_text())
        if saved.get("steps") == settings.steps and (run / "export").is_dir():
            report_stage("train", settings.steps, settings.steps, "reused")
            saved["run_dir"] = run
            saved["checkpoint"] = Path(saved["checkpoint"]) if saved.get("checkpoint") else None
            saved["export"] = run / "export"
            return TrainResult(**saved)

    def on_event(event: TrainEvent) -> None:
        if isinstance(event, StepLog):
            report_stage("train", event.step, event.total_steps, f"loss {event.loss:.3f}")

    resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("*.pt"))
    return train(
        features,
        run,
        settings.model_options,
        _train_config(settings),
        resume=resume,
        device=device,
        on_event=on_event,
    )


def _score_rows(
    split: LabelledSplit,
    out: Path,
    thresholds: dict[str, float],
    controls: dict[str, float | None],
    grid: tuple[int, int],
    report_stage: StageCallback,
) -> tuple[list[DemoRow], list[str]]:
    """The report's rows and notes; ``thresholds`` maps each grounded row to its τ,
    ``controls`` the wrong-query controls to their pointing game."""

    rows = []
    sources = {name: out / "ground" / name / "predictions.json" for name in thresholds}
    steps = len(sources) + 1
    for done, (name, path) in enumerate(sources.items()):
        report_stage("score", done, steps, name)
        tau = thresholds[name] if name in UNTRIMMED_ROWS else None
        rows.append(DemoRow(name=name, metrics=score_split(path, split, tau)))
        if name == UNTRIMMED_ROWS[-1]:
            uniform = dict.fromkeys(SPATIAL_METRICS)
            uniform[TEMPORAL_METRIC] = uniform_split_iou(path, split)
            rows.append(DemoRow(name="uniform", metrics=uniform))
        if name == "trained_true_timing":
            for key, row_name in CONTROL_ROWS.items():
                if key in controls:
                    metrics = dict.fromkeys((*SPATIAL_METRICS, TEMPORAL_METRIC))
                    metrics["pointing_game"] = controls[key]
                    rows.append(DemoRow(name=row_name, metrics=metrics))
    report_stage("score", len(sources), steps, "model-free priors")
    priors = split_priors(split, grid=tuple(grid))
    for kind in PRIORS:
        if kind in priors.scores:
            metrics = {key: priors.scores[kind].get(key) for key in SPATIAL_METRICS}
            rows.append(DemoRow(name=kind, metrics={**metrics, TEMPORAL_METRIC: None}))
    report_stage("score", steps, steps, "")
    trained = next(row for row in rows if row.name == "trained_true_timing")
    close = close_priors_note(priors, trained.metrics["pointing_game"] or 0.0)
    return rows, [note for note in (close, *priors.notes) if note]
