"""The training loop of ``stg train``: AdamW, warm-up + cosine, clipping, checkpoints, DDP.

One step: the batch of this step (see :mod:`stg_cli.train.data`) → frame selection → global and
local embeddings → NCE losses (see :mod:`stg_cli.train.losses`) → backward → gradient clipping
→ AdamW → learning-rate schedule. Under ``torchrun`` every process runs this loop on its part
of each global batch inside DistributedDataParallel; rank 0 alone writes files.

Run folder: ``config.json`` (model, training and store settings), ``metrics.jsonl`` (one line
per logged step), ``loss.png``, ``checkpoints/`` (see :mod:`stg_cli.models.checkpoint`),
``export/`` (the inference export read by ``stg ground``, with its model card) and
``summary.json``.

Everything a run does besides optimising is a :class:`TrainHook`, called before the first step,
after each step and at each checkpoint: :class:`MetricsLog` (``metrics.jsonl``),
:class:`Evaluation` (``--eval``: ``eval.jsonl``) and :class:`Checkpointing` (checkpoints,
``best.pt``, ``loss.png``), in that order; the run reports typed events
(:mod:`stg_cli.train.events`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from stg_cli import files
from stg_cli.errors import UserError
from stg_cli.features import FeatureStore
from stg_cli.models.checkpoint import CheckpointManager, load_checkpoint
from stg_cli.models.config import ModelConfig
from stg_cli.models.export import ModelCard, save_export, store_config_dict, write_model_card
from stg_cli.models.grounding import GroundingModel
from stg_cli.runs.evaluation import LabelledSplit, evaluate_export, split_priors
from stg_cli.train.calibration import calibrate_threshold
from stg_cli.train.config import TrainConfig
from stg_cli.train.data import BatchOrder, ClipDataset, feature_stats
from stg_cli.train.distributed import (
    DistInfo,
    all_reduce_mean,
    elastic_job,
    from_main,
    init_distributed,
    shutdown,
)
from stg_cli.train.events import CheckpointSaved, Evaluated, PriorsScored, RunStarted, StepLog, TrainEvent
from stg_cli.train.losses import global_loss, local_loss
from stg_cli.train.plot import plot_losses, read_metrics

PLOT_EVERY_S = 60.0
# with --eval, best.pt is the evaluated checkpoint with the highest of this score (the paper's
# spatio-temporal metric: the frame's label and its point both right, over all annotated frames)
BEST_EVAL_METRIC = "iou_point"
STORE_KEYS = ("backbone", "text", "visual_dim", "text_dim", "grid", "fingerprint")


def lr_factor(step: int, total: int, warmup: float, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warm-up, cosine."""
    warm = int(warmup) if warmup >= 1 else int(round(warmup * total))
    warm = max(0, min(warm, total - 1))
    if step < warm:
        return (step + 1) / (warm + 1)
    progress = (step - warm) / max(1, total - warm)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    run_dir: Path
    steps: int
    total_steps: int
    final_loss: float | None
    first_loss: float | None
    checkpoint: Path | None
    export: Path | None
    samples: int
    world_size: int
    elapsed_s: float
    clips_per_s: float
    interrupted: bool = False

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("run_dir", "checkpoint", "export"):
            data[key] = None if data[key] is None else str(data[key])
        return data


class TrainingStopped(UserError):
    """The loss or the gradient stopped being finite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the final checkpoint was written."""

    def __init__(self, result: TrainResult) -> None:
        super().__init__("interrupted")
        self.result = result


Events = Callable[[TrainEvent], None]


def train(
    features: Path | object,
    out: Path,
    model_options: dict | None = None,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    device: str = "auto",
    on_event: Events | None = None,
    stop_after: int | None = None,
    ops: str = "auto",
) -> TrainResult:
    """Trains a grounding model on a feature store.

    Args:
        features: a feature store folder (or an opened store).
        out: the run folder.
        model_options: :class:`ModelConfig` fields other than the dims (dim, attention,
            frames_u, frames_t, select, ...); the dims and grid come from the store.
        config: optimisation settings.
        resume: continue the run in ``out`` from its latest checkpoint with its saved model
            and training settings (``model_options`` and ``config`` are then ignored). Under
            torchrun a run resumes by itself when ``out``'s latest checkpoint was written by
            the same job (rendezvous id): after an elastic restart, or a relaunch of the job.
        device: auto | cpu | cuda (under torchrun each process takes its LOCAL_RANK GPU).
        on_event: called on rank 0 with each event (:mod:`stg_cli.train.events`):
            :class:`RunStarted`, a :class:`StepLog` per step, :class:`CheckpointSaved`, and with
            ``--eval`` :class:`PriorsScored` and :class:`Evaluated`.
        stop_after: stop (with a checkpoint) once this many steps are done in total, as if
            interrupted there; the schedule still spans the full run.
        ops: the attention kernels, "auto" (per call the faster on the device,
            :func:`stg_cli.models.grounding.uses_native_attention`), "native" or "reference".

    Raises:
        UserError: unusable store, store/checkpoint mismatch, run folder conflicts.
        TrainingStopped: a non-finite loss or gradient.
        TrainingInterrupted: Ctrl-C (after writing a checkpoint).
    """
    info = init_distributed(device)
    finished = False
    try:
        result = _train(
            features,
            Path(out),
            model_options or {},
            config or TrainConfig(),
            resume,
            info,
            on_event,
            stop_after,
            ops,
        )
        finished = True
        return result
    finally:
        shutdown(info, finished)


def _open_store(features):
    if isinstance(features, (str, Path)):
        return FeatureStore.open(Path(features))
    return features


def _describe_store(store: dict) -> str:
    grid = store.get("grid")
    grid_text = f"{grid[0]}x{grid[1]}" if grid else "?"
    return (
        f"backbone {store.get('backbone')}, text {store.get('text')}, visual "
        f"{store.get('visual_dim')}-d, text {store.get('text_dim')}-d, grid {grid_text}, "
        f"fingerprint {str(store.get('fingerprint'))[:12]}"
    )


def check_store_matches(saved: dict, current: dict, run_dir: Path) -> None:
    """Raises UserError when a run's checkpoint was trained on another kind of features."""
    differs = [key for key in STORE_KEYS if key in saved and saved.get(key) != current.get(key)]
    if differs:
        raise UserError(
            f"{run_dir} was trained on features with {_describe_store(saved)}, but this store "
            f"has {_describe_store(current)} ({', '.join(differs)} differ); use the same "
            "feature store or start a new run with another --out"
        )


def _emit(info: DistInfo, on_event: Events | None, event: TrainEvent) -> None:
    if on_event is not None and info.is_main:
        on_event(event)


class _StopRequest:
    """First Ctrl-C asks the loop to stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def initial_export(
    features: Path | object, out: Path, model_options: dict | None = None, config: TrainConfig | None = None
) -> Path:
    """Writes the export of the model a run would start from, untrained: the same seeded
    initialisation and input statistics as step 0 of :func:`train` with these settings.

    It is the "untrained" row of comparisons (``stg demo``). Returns the export folder.
    """
    config = config or TrainConfig()
    store = _open_store(features)
    model_config = _model_config(store, model_options or {})
    dataset = ClipDataset(
        store, model_config.frames_u, config.min_time, center_video=model_config.center_video
    )
    model = _seeded_model(model_config, config.seed)
    model.set_feature_stats(feature_stats(dataset))
    model.detection_threshold.fill_(calibrate_threshold(model, dataset))
    return save_export(model, Path(out), store_config_dict(store.config), _text_encoder_dir(store))


def _evaluate(
    model: GroundingModel, dataset: ClipDataset, store, split, folder: Path, device: torch.device
) -> dict:
    """Scores of the model as it is now on ``split`` (:func:`stg_cli.runs.evaluation.
    evaluate_export`), through an export with its threshold calibrated, in ``folder``."""

    snapshot = copy.deepcopy(model).eval()
    snapshot.detection_threshold.fill_(calibrate_threshold(snapshot, dataset))
    export = save_export(
        snapshot, folder / "export", store_config_dict(store.config), _text_encoder_dir(store)
    )
    return evaluate_export(export, split, folder, device=str(device))


def _eval_priors(split, out: Path, model_config: ModelConfig) -> dict[str, float]:
    """The pointing game (percent, given true timing) of every model-free prior on the
    evaluation split (:func:`stg_cli.runs.evaluation.split_priors` on the model's grid), also
    written to ``eval-priors.json``: what the model's true-timing pointing is compared with."""

    priors = split_priors(split, grid=model_config.grid)
    files.write_json(out / "eval-priors.json", priors.to_dict(), indent=1, allow_nan=False)
    return {kind: values["pointing_game"] for kind, values in priors.scores.items()}


def _seeded_model(model_config: ModelConfig, seed: int, ops: str = "native") -> GroundingModel:
    """The model at its initialisation for ``seed`` (the global RNGs are seeded too, as the
    rest of a run draws from them)."""
    torch.manual_seed(seed)
    random.seed(seed)
    return GroundingModel(model_config, ops=ops)


def _text_encoder_dir(store) -> Path | None:
    """The store's ``text_encoder/`` folder, copied into exports (None for an in-memory store)."""
    root = getattr(store, "root", None)
    return Path(root) / "text_encoder" if root is not None else None


def _model_config(store, model_options: dict) -> ModelConfig:
    """The model configuration of ``model_options`` with the store's dims and grid."""
    options = dict(model_options)
    options.setdefault("grid", tuple(store.config.grid))
    try:
        model_config = ModelConfig(
            visual_dim=int(store.config.visual_dim), text_dim=int(store.config.text_dim), **options
        )
    except (ValueError, TypeError) as error:
        raise UserError(str(error)) from error
    if tuple(model_config.grid) != tuple(store.config.grid):
        raise UserError(
            f"the model grid {model_config.grid} differs from the feature store's {tuple(store.config.grid)}"
        )
    return model_config


@dataclass
class RunState:
    """Where a run is, as its hooks see it: the step done, the smoothed loss, the best scores
    so far, the last checkpoint written, the evaluation of the current checkpoint step."""

    out: Path
    info: DistInfo
    model: GroundingModel
    dataset: ClipDataset
    store: object
    step: int
    start_step: int
    total: int
    end_step: int
    best_loss: float
    best_eval: float
    smoothed: float | None
    last_checkpoint: Path | None
    evaluation: dict | None = None
    interrupted: bool = False


class TrainHook:
    """What a run does besides optimising (the pattern of detectron2's hooks). The loop calls
    ``before_train`` once, ``after_step`` after every step, ``at_checkpoint`` at every
    checkpoint step and at the end (``final``), in the order of the hooks; every process calls
    them, and the hooks that write act on rank 0 only."""

    def before_train(self, run: RunState) -> None:
        """Before the first step (a resumed run: before its next step)."""

    def after_step(self, run: RunState, log: StepLog) -> None:
        """After each optimiser step."""

    def at_checkpoint(self, run: RunState, final: bool) -> None:
        """At a checkpoint step, and once at the end of the run (``final``)."""


class MetricsLog(TrainHook):
    """``metrics.jsonl``: the first step's, every ``every``-th and the last step's
    :class:`StepLog`; a resumed run drops the lines beyond the step it resumes from."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every

    def before_train(self, run: RunState) -> None:
        if run.info.is_main:
            _truncate_metrics(self.path, run.start_step)

    def after_step(self, run: RunState, log: StepLog) -> None:
        chosen = log.step % self.every == 0 or log.step in (run.end_step, run.start_step + 1)
        if run.info.is_main and chosen:
            files.append_text(self.path, json.dumps(log.to_dict()) + "\n")


class Evaluation(TrainHook):
    """``--eval``: the model-free priors of the split once (``eval-priors.json``), then the
    model grounded and scored on the split at every checkpoint and at the end (not after
    Ctrl-C): ``eval.jsonl``, :attr:`RunState.evaluation`, an :class:`Evaluated` event."""

    def __init__(self, split, model_config: ModelConfig, emit: Callable[[TrainEvent], None]) -> None:
        self.split, self.model_config, self.emit = split, model_config, emit
        self.rows: list[dict] = []
        self.priors: dict[str, float] | None = None

    def before_train(self, run: RunState) -> None:
        if not run.info.is_main:
            return
        _truncate_metrics(run.out / "eval.jsonl", run.start_step)
        self.priors = _eval_priors(self.split, run.out, self.model_config)
        self.emit(PriorsScored(self.priors))

    def at_checkpoint(self, run: RunState, final: bool) -> None:
        run.evaluation = None
        if not run.info.is_main or (final and run.interrupted):
            return
        scores = _evaluate(run.model, run.dataset, run.store, self.split, run.out / "eval", run.info.device)
        row = {"step": run.step, **scores}
        files.append_text(run.out / "eval.jsonl", json.dumps(row) + "\n")
        self.rows.append(row)
        run.evaluation = row
        self.emit(Evaluated(run.step, scores))


class Checkpointing(TrainHook):
    """The step's checkpoint (:class:`CheckpointManager`), also ``best.pt`` when it is the
    best so far: by :data:`BEST_EVAL_METRIC` of its evaluation with ``--eval`` (put after the
    :class:`Evaluation` hook), else by the smoothed loss; ``loss.png`` at the end and at most
    every :data:`PLOT_EVERY_S` before (drawing costs about a second)."""

    def __init__(
        self,
        manager: CheckpointManager,
        state: Callable[[int], dict],
        by_evaluation: bool,
        emit: Callable[[TrainEvent], None],
    ) -> None:
        self.manager, self.state, self.by_evaluation, self.emit = manager, state, by_evaluation, emit
        self.last_plot = time.perf_counter()

    def at_checkpoint(self, run: RunState, final: bool) -> None:
        if not run.info.is_main:
            return
        if self.by_evaluation:
            score = (run.evaluation or {}).get(BEST_EVAL_METRIC)
            best = score is not None and score > run.best_eval
            if best:
                run.best_eval = score
        else:
            best = run.smoothed is not None and run.smoothed < run.best_loss
            if best:
                run.best_loss = run.smoothed
        path = self.manager.save(self.state(run.step), run.step, best=best)
        run.last_checkpoint = path
        if final or time.perf_counter() - self.last_plot > PLOT_EVERY_S:
            metrics = run.out / "metrics.jsonl"
            plot_losses(read_metrics(metrics), run.out / "loss.png")
            self.last_plot = time.perf_counter()
        self.emit(CheckpointSaved(path, run.step, best))


def _train(features, out, model_options, config, resume, info, on_event, stop_after, ops):
    store = _open_store(features)
    store_config = store_config_dict(store.config)
    manager = CheckpointManager(out, keep=config.keep)
    state = None
    latest = from_main(manager.latest(), info)
    if not resume and latest is not None and elastic_job() is not None:
        state = load_checkpoint(latest)
        resume = state.get("job") == elastic_job()
        state = state if resume else None
    if resume:
        if latest is None:
            raise UserError(f"--resume: {out} holds no checkpoint to resume from")
        state = state or load_checkpoint(latest)
        check_store_matches(state.get("store", {}), store_config, out)
        model_config = ModelConfig.from_dict(state["model_config"])
        config = TrainConfig.from_dict(state["train_config"])
        manager = CheckpointManager(out, keep=config.keep)
    else:
        if manager.steps():
            raise UserError(
                f"{out} already holds a training run (step {manager.steps()[-1]}); pass --resume "
                "to continue it or choose another --out"
            )
        model_config = _model_config(store, model_options)
    dataset = ClipDataset(
        store, model_config.frames_u, config.min_time, center_video=model_config.center_video
    )
    split = None
    if config.eval_split is not None:
        split = LabelledSplit.find(config.eval_split)
    if config.batch_size % info.world_size:
        raise UserError(
            f"--batch-size {config.batch_size} is not divisible by the {info.world_size} processes"
        )
    groups = dataset.sample_videos() if config.negatives == "same-video" else None
    order = BatchOrder(len(dataset), config.batch_size, config.seed, groups)
    total = config.total_steps(order.steps_per_epoch)
    if state is not None and int(state["data"]["num_samples"]) != len(dataset):
        raise UserError(
            f"the feature store yields {len(dataset)} training samples but the run in {out} was "
            f"trained on {state['data']['num_samples']}; resume with the same feature store"
        )

    model = _seeded_model(model_config, config.seed, ops)
    if state is None:
        model.set_feature_stats(feature_stats(dataset))
    model.to(info.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, config.warmup, config.min_lr_ratio)
    )
    start_step, best_loss, best_eval, smoothed = 0, math.inf, -math.inf, None
    if state is not None:
        model.load_weights(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(state["rng"], info.device)
        start_step = int(state["step"])
        best_loss = float(state.get("best_loss", math.inf))
        best_eval = float(state.get("best_eval", -math.inf))
        smoothed = state.get("smoothed_loss")
    loss_config = config.loss_config
    amp = config.amp if config.amp is not None else info.device.type == "cuda"
    amp = amp and info.device.type == "cuda"
    trained = (
        DistributedDataParallel(
            model,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=loss_config.mode != "both",
        )
        if info.enabled
        else model
    )

    def emit(event: TrainEvent) -> None:
        _emit(info, on_event, event)

    def checkpoint_state(step: int) -> dict:
        return {
            "step": step,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _capture_rng(info.device),
            "data": {
                "step": step,
                "num_samples": len(dataset),
                "global_batch": config.batch_size,
                "seed": config.seed,
                "epoch": order.epoch_of(step),
            },
            "model_config": model_config.to_dict(),
            "train_config": config.to_dict(),
            "store": store_config,
            "best_loss": run.best_loss,
            "best_eval": run.best_eval,
            "smoothed_loss": run.smoothed,
            "world_size": info.world_size,
            "job": elastic_job(),
        }

    end_step = total if stop_after is None else min(total, int(stop_after))
    run = RunState(
        out=out,
        info=info,
        model=model,
        dataset=dataset,
        store=store,
        step=start_step,
        start_step=start_step,
        total=total,
        end_step=end_step,
        best_loss=best_loss,
        best_eval=best_eval,
        smoothed=smoothed,
        last_checkpoint=manager.latest(),
    )
    evaluation = Evaluation(split, model_config, emit) if split is not None else None
    hooks: list[TrainHook] = [MetricsLog(out / "metrics.jsonl", config.log_every)]
    if evaluation is not None:
        hooks.append(evaluation)
    hooks.append(Checkpointing(manager, checkpoint_state, evaluation is not None, emit))
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    for hook in hooks:
        hook.before_train(run)
    if info.is_main:
        files.write_json(
            out / "config.json",
            {
                "model": model_config.to_dict(),
                "train": config.to_dict(),
                "store": store_config,
                "samples": len(dataset),
                "world_size": info.world_size,
                "total_steps": total,
            },
        )
    emit(
        RunStarted(
            samples=len(dataset),
            total_steps=total,
            start_step=start_step,
            steps_per_epoch=order.steps_per_epoch,
            world_size=info.world_size,
            device=str(info.device),
            amp=amp,
            model=model_config.to_dict(),
        )
    )

    begin = time.perf_counter()
    first_loss = None
    last_loss = None
    rate = None
    per_rank = config.batch_size // info.world_size
    with _StopRequest() as stop:
        while run.step < end_step:
            tick = time.perf_counter()
            ids = order.ids(run.step, info.rank, info.world_size)
            batch = dataset.batch(ids).to(info.device)
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
            with autocast:
                output = trained(
                    **batch.model_inputs(),
                    local_chunk=min(config.local_chunk, per_rank),
                    compute_global=loss_config.uses_global,
                    compute_local=loss_config.uses_local,
                )
            zero = torch.zeros((), device=info.device)
            lg, lg_backward = (zero, zero)
            if loss_config.uses_global:
                lg, lg_backward = global_loss(
                    output.video_global.float(),
                    output.sentence_global.float(),
                    loss_config,
                    info.world_size,
                    info.rank,
                )
            ll = local_loss(output.local_similarity, loss_config) if loss_config.uses_local else zero
            flags = torch.stack(
                [
                    lg.detach().float(),
                    ll.detach().float(),
                    torch.tensor(0.0 if bool(torch.isfinite(lg + ll)) else 1.0, device=info.device),
                    torch.tensor(1.0 if stop.requested else 0.0, device=info.device),
                ]
            )
            reduced = all_reduce_mean(torch.nan_to_num(flags, nan=0.0, posinf=0.0, neginf=0.0), info)
            if reduced[2] > 0:
                _stop_nonfinite(run.step + 1, "loss", lg, ll, loss_config, run.last_checkpoint)
            if reduced[3] > 0:
                run.interrupted = True
                break
            optimizer.zero_grad(set_to_none=True)
            (lg_backward + ll).backward()
            if config.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            else:
                grad_norm = torch.sqrt(
                    sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None)
                )
            if not torch.isfinite(grad_norm):
                _stop_nonfinite(run.step + 1, "gradient norm", lg, ll, loss_config, run.last_checkpoint)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            run.step += 1
            loss_value = float(reduced[0] + reduced[1])
            first_loss = loss_value if first_loss is None else first_loss
            last_loss = loss_value
            run.smoothed = loss_value if run.smoothed is None else 0.9 * run.smoothed + 0.1 * loss_value
            seconds = time.perf_counter() - tick
            current = config.batch_size / max(seconds, 1e-9)
            rate = current if rate is None else 0.9 * rate + 0.1 * current
            log = StepLog(
                step=run.step,
                total_steps=total,
                epoch=run.step / order.steps_per_epoch,
                loss=loss_value,
                loss_global=float(reduced[0]) if loss_config.uses_global else None,
                loss_local=float(reduced[1]) if loss_config.uses_local else None,
                lr=lr,
                grad_norm=float(grad_norm),
                clips_per_s=rate,
                elapsed_s=time.perf_counter() - begin,
                eta_s=(total - run.step) * config.batch_size / max(rate, 1e-9),
            )
            for hook in hooks:
                hook.after_step(run, log)
            emit(log)
            if run.step % config.checkpoint_every == 0 and run.step < end_step:
                for hook in hooks:
                    hook.at_checkpoint(run, final=False)
    step, interrupted = run.step, run.interrupted
    checkpoint = run.last_checkpoint
    if step > start_step or interrupted or run.last_checkpoint is None:
        model.detection_threshold.fill_(calibrate_threshold(model, dataset))
        for hook in hooks:
            hook.at_checkpoint(run, final=True)
        checkpoint = run.last_checkpoint if info.is_main else None
    export = None
    if info.is_main:
        export = save_export(model, out / "export", store_config, _text_encoder_dir(store))
        write_model_card(
            export,
            ModelCard(
                steps=step,
                total_steps=total,
                samples=len(dataset),
                first_loss=first_loss,
                final_loss=last_loss,
                train=config.to_dict(),
                evaluation=evaluation.rows[-1] if evaluation is not None and evaluation.rows else None,
                eval_split=str(config.eval_split) if config.eval_split is not None else None,
                priors=evaluation.priors if evaluation is not None else None,
                threshold=model.calibrated_threshold,
            ),
        )
    elapsed = time.perf_counter() - begin
    result = TrainResult(
        run_dir=out,
        steps=step,
        total_steps=total,
        final_loss=last_loss,
        first_loss=first_loss,
        checkpoint=checkpoint,
        export=export,
        samples=len(dataset),
        world_size=info.world_size,
        elapsed_s=elapsed,
        clips_per_s=(step - start_step) * config.batch_size / max(elapsed, 1e-9),
        interrupted=interrupted,
    )
    if info.is_main:
        files.write_json(out / "summary.json", result.to_dict())
    if interrupted:
        raise TrainingInterrupted(result)
    return result


def _stop_nonfinite(step, what, lg, ll, loss_config, last_checkpoint) -> None:
    parts = []
    if loss_config.uses_global:
        parts.append(f"global {float(lg.detach()):.4g}")
    if loss_config.uses_local:
        parts.append(f"local {float(ll.detach()):.4g}")
    kept = (
        f"the last good checkpoint is {last_checkpoint}"
        if last_checkpoint is not None
        else "no checkpoint had been written yet"
    )
    raise TrainingStopped(
        f"training stopped at step {step}: the {what} is not finite ({', '.join(parts)}) "
        f"{kept}; try a lower --lr"
    )


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops metric lines beyond ``step`` (a resumed run rewrites them)."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    kept = [
        line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step
    ]
    files.write_text(path, "".join(line + "\n" for line in kept))


def _capture_rng(device: torch.device) -> dict:
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
