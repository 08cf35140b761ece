"""``stg demo``: the whole pipeline on a synthetic narrated benchmark, as library calls.

Stages: ``synth`` (render train/test videos, captions, ground truth) → ``extract`` (``tiny``
visual backbone, word2vec trained on the train captions) → ``train`` → ``ground`` the test
videos with the trained model (the first one also with ``--viz``) and with the same model
untrained (its seeded initialisation with the same input statistics) → ``score`` both and a
baseline on the test ground truth.

Folder layout under ``out``: ``synth/``, ``features/``, ``run/`` (training run),
``untrained/`` (the untrained export), ``ground/trained/``, ``ground/untrained/``,
``baseline/predictions.json`` and ``report.json``.

Interrupted demos continue where they stopped: a finished synth benchmark with the same settings
is reused, extraction skips stored videos, training resumes from its last checkpoint (a finished
run is reused). Grounding and scoring are always redone (seconds).

The rows of the report:

- ``trained``: the model after training;
- ``untrained``: the same architecture at its initialisation, to show what training adds;
- ``baseline``: ground-truth timing and labels with the point at the frame centre and a centred
  box of half the frame (``stg_cli.metrics.baselines``, ``centre``): what a model that knows when
  and what, but not where, scores. It has no similarity matrix, hence no temporal IoU.

Detection threshold: the demo grounds with τ = :data:`DEMO_TAU`. Models trained for minutes on a
few dozen videos give frame–query cosines far below the paper's 0.5 (contrastive training only
needs positives to beat negatives), so 0.5 would detect nothing for any of the rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stg_cli.errors import UserError
from stg_cli.synth.config import SynthConfig

DEMO_TAU = 0.2
PRESETS = ("quick", "full")
SPATIAL_METRICS = (
    "iou_point", "map@0.1", "map@0.2", "map@0.3", "map@0.4", "map@0.5", "map_mean",
    "pointing_game",
)
TEMPORAL_METRIC = "temporal_iou"
STAGES = ("synth", "extract", "train", "ground", "score")

StageCallback = Callable[[str, int, int, str], None]


@dataclass(frozen=True)
class DemoPreset:
    """Settings of one demo size: the benchmark, the model and the training run.

    ``model_options`` are :class:`stg_cli.models.ModelConfig` fields, ``train_options`` further
    :class:`stg_cli.train.TrainConfig` fields (e.g. ``loss``, ``seed``) for ablations.
    """

    name: str
    synth: SynthConfig
    model_options: dict
    steps: int
    batch_size: int
    local_chunk: int
    train_options: dict = field(default_factory=dict)


def preset(name: str) -> DemoPreset:
    """``quick`` (the default: ≤ 5 minutes on a 2-core CPU) or ``full`` (the larger benchmark).

    Raises:
        UserError: for another name.
    """
    if name == "quick":
        return DemoPreset(
            name="quick",
            synth=SynthConfig.quick(),
            model_options={"dim": 128, "frames_u": 8, "frames_t": 4},
            steps=300,
            batch_size=32,
            local_chunk=8,
        )
    if name == "full":
        return DemoPreset(
            name="full",
            synth=SynthConfig.full(),
            model_options={"dim": 256, "frames_u": 16, "frames_t": 8},
            steps=3000,
            batch_size=64,
            local_chunk=16,
        )
    raise UserError(f"unknown demo preset {name!r}; choose from {', '.join(PRESETS)}")


@dataclass
class DemoRow:
    """Scores of one model (percent; None where the row has no such metric)."""

    name: str
    metrics: dict[str, float | None]


@dataclass
class DemoReport:
    """What :func:`run_demo` produced."""

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

    def row(self, name: str) -> DemoRow:
        return next(row for row in self.rows if row.name == name)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("out", "overlay", "timeline"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


def run_demo(out: Path, settings: str | DemoPreset = "quick",
             on_stage: StageCallback | None = None, device: str = "cpu") -> DemoReport:
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
    features = _extract(synth_dir, out / "features", report_stage, device)
    seconds["extract"] = time.perf_counter() - begin

    begin = time.perf_counter()
    trained = _train(features, out / "run", settings, report_stage, device)
    seconds["train"] = time.perf_counter() - begin

    begin = time.perf_counter()
    from stg_cli.train import initial_export

    untrained_export = initial_export(
        features, out / "untrained", settings.model_options, _train_config(settings)
    )
    test_videos = synth_dir / "test" / "videos"
    queries = synth_dir / "test" / "annotations" / "vid2step.json"
    report_stage("ground", 0, 2, "trained model")
    failed = _ground(trained.export, test_videos, queries, out / "ground" / "trained", device,
                     viz_first=True)
    report_stage("ground", 1, 2, "untrained model")
    failed += _ground(untrained_export, test_videos, queries, out / "ground" / "untrained",
                      device, viz_first=False)
    report_stage("ground", 2, 2, "")
    seconds["ground"] = time.perf_counter() - begin

    begin = time.perf_counter()
    rows = _score_rows(synth_dir / "test" / "annotations", out, report_stage)
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
        test_videos=len(list(test_videos.glob("*.mp4"))),
        failed_videos=sorted(set(failed)),
    )
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _synth(target: Path, config: SynthConfig, report_stage: StageCallback) -> Path:
    from stg_cli.synth import generate

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


def _extract(synth_dir: Path, target: Path, report_stage: StageCallback, device: str) -> Path:
    from stg_cli.features.extract import ExtractOptions, extract

    videos = synth_dir / "train" / "videos"
    total = len(list(videos.glob("*.mp4")))
    done = 0

    def on_video(result) -> None:
        nonlocal done
        done += 1
        report_stage("extract", done, total, result.video_id)

    summary = extract([videos], synth_dir / "train" / "captions.json", target,
                      ExtractOptions(device=device), on_video=on_video)
    if summary.manifest_videos == 0:
        raise UserError(f"no training video could be extracted into {target}")
    report_stage("extract", total, total, "")
    return target


def _train_config(settings: DemoPreset):
    from stg_cli.train import TrainConfig

    return TrainConfig(
        steps=settings.steps,
        batch_size=settings.batch_size,
        local_chunk=settings.local_chunk,
        log_every=max(1, settings.steps // 30),
        checkpoint_every=max(1, settings.steps // 4),
        **settings.train_options,
    )


def _train(features: Path, run: Path, settings: DemoPreset, report_stage: StageCallback,
           device: str):
    from stg_cli.train import TrainResult, train

    summary = run / "summary.json"
    if summary.is_file():
        saved = json.loads(summary.read_text())
        if saved.get("steps") == settings.steps and (run / "export").is_dir():
            report_stage("train", settings.steps, settings.steps, "reused")
            saved["run_dir"] = run
            saved["checkpoint"] = Path(saved["checkpoint"]) if saved.get("checkpoint") else None
            saved["export"] = run / "export"
            return TrainResult(**saved)

    def on_event(kind: str, payload: object) -> None:
        if kind == "step":
            report_stage("train", payload.step, payload.total_steps, f"loss {payload.loss:.3f}")

    resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("*.pt"))
    return train(features, run, settings.model_options, _train_config(settings), resume=resume,
                 device=device, on_event=on_event)


def _ground(export: Path, videos: Path, queries: Path, target: Path, device: str,
            viz_first: bool) -> list[str]:
    from stg_cli.ground.output import write_combined
    from stg_cli.ground.pipeline import GroundSettings, Grounder, find_videos, ground_videos
    from stg_cli.ground.queries import load_queries

    grounder = Grounder(export, device=device)
    inputs, _ = find_videos([videos])
    query_set = load_queries(queries)
    results = []
    for chunk, viz in ((inputs[:1], viz_first), (inputs[1:], False)):
        settings = GroundSettings(tau=DEMO_TAU, viz=viz)
        results += ground_videos(grounder, chunk, query_set, settings, target)[0]
    write_combined({r.video_id: r.prediction for r in results if r.prediction is not None}, target)
    return [result.video_id for result in results if result.error]


def _score_rows(annotations: Path, out: Path, report_stage: StageCallback) -> list[DemoRow]:
    from stg_cli.metrics.baselines import baseline_predictions, save_predictions
    from stg_cli.metrics.predictions import load_predictions
    from stg_cli.metrics.score import load_ground_truth, score

    spatial_truth = load_ground_truth([annotations], "synth")
    temporal_truth = load_ground_truth([annotations], "miningyoutube")
    baseline = baseline_predictions(spatial_truth, "centre")
    save_predictions(baseline, out / "baseline" / "predictions.json")
    rows = []
    sources = {
        "trained": out / "ground" / "trained" / "predictions.json",
        "untrained": out / "ground" / "untrained" / "predictions.json",
        "baseline": out / "baseline" / "predictions.json",
    }
    for done, (name, path) in enumerate(sources.items()):
        report_stage("score", done, len(sources), name)
        predictions = load_predictions(path)
        spatial = score(predictions, spatial_truth, "synth").metrics
        metrics: dict[str, float | None] = {key: spatial.get(key) for key in SPATIAL_METRICS}
        metrics[TEMPORAL_METRIC] = None
        if name != "baseline":
            temporal = score(predictions, temporal_truth, "miningyoutube")
            metrics[TEMPORAL_METRIC] = temporal.metrics["iou"]
        rows.append(DemoRow(name=name, metrics=metrics))
    report_stage("score", len(sources), len(sources), "")
    return rows
