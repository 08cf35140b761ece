"""Tests of the training loop: loss falls, exact resume, checkpoints, export, failures."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers.stores import make_store
from stg_cli.errors import UserError
from stg_cli.models.checkpoint import CheckpointManager
from stg_cli.models.export import load_export
from stg_cli.train import TrainConfig, TrainingStopped, initial_export, load_checkpoint, lr_factor, train

MODEL = {"dim": 16, "frames_u": 8, "frames_t": 4}


def config(**overrides) -> TrainConfig:
    values = dict(steps=12, batch_size=8, lr=3e-3, local_chunk=4, log_every=2, checkpoint_every=4)
    values.update(overrides)
    return TrainConfig(**values)


def test_lr_schedule_warms_up_then_decays():
    factors = [lr_factor(step, 100, 0.1, 0.0) for step in range(100)]
    assert factors[0] < factors[5] < factors[9] <= 1.0
    assert max(factors) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] < 0.01


def test_initial_export_is_the_model_a_run_starts_from(tmp_path):
    store = make_store(videos=3)
    settings = config(steps=1, lr=1e-12, weight_decay=0.0)
    export = initial_export(store, tmp_path / "untrained", MODEL, settings)
    train(store, tmp_path / "run", MODEL, settings)
    untrained, started = load_export(export).model, load_export(tmp_path / "run").model
    assert untrained.config == started.config
    for name, value in untrained.state_dict().items():
        torch.testing.assert_close(value, started.state_dict()[name], rtol=0, atol=1e-9)
    assert not torch.equal(untrained.frame_norm.inv_std, torch.ones_like(untrained.frame_norm.inv_std))


@pytest.mark.parametrize("change", [{"dim": 2_000_000}, {"dim": 12.5}, {"grid": [7, 7000]}])
def test_a_tampered_export_config_is_refused_before_allocating(tmp_path, change):
    export = initial_export(make_store(videos=3), tmp_path / "untrained", MODEL, config(steps=1))
    config_path = export / "config.json"
    saved = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**saved, "model": {**saved["model"], **change}}))
    with pytest.raises(UserError, match=f"{config_path}: malformed model settings: .*{next(iter(change))}"):
        load_export(export)


@pytest.mark.parametrize(
    "weights",
    [
        b"\xff" * 8 + b"{}",  # a header length past the file
        (20).to_bytes(8, "little") + b'{"w": not json!!!!}',
        b"",
    ],
)
def test_tampered_export_weights_are_one_line(tmp_path, weights):
    export = initial_export(make_store(videos=3), tmp_path / "untrained", MODEL, config(steps=1))
    (export / "model.safetensors").write_bytes(weights)
    with pytest.raises(UserError, match=f"{export / 'model.safetensors'}: not readable weights: ") as refused:
        load_export(export)
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_the_run(tmp_path):
    store = make_store(videos=6)
    events = []
    result = train(
        store,
        tmp_path / "run",
        MODEL,
        config(steps=40, checkpoint_every=10),
        on_event=lambda event: events.append(type(event).__name__),
    )
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1 and rows[-1]["step"] == 40
    first = sum(r["loss"] for r in rows[:3]) / 3
    last = sum(r["loss"] for r in rows[-3:]) / 3
    assert last < 0.8 * first
    assert {"loss_global", "loss_local", "lr", "clips_per_s", "eta_s"} <= set(rows[-1])
    assert (run / "loss.png").stat().st_size > 1000
    assert CheckpointManager(run).steps() == [20, 30, 40]  # keep 3
    assert (run / "checkpoints" / "best.pt").exists()
    card = (run / "export" / "README.md").read_text()
    assert "40 of 40 steps" in card and "Not evaluated" in card and "## Intended use" in card
    assert result.steps == 40 and result.export == run / "export"
    assert events[0] == "RunStarted" and events.count("StepLog") == 40 and "CheckpointSaved" in events
    state = load_checkpoint(run / "checkpoints" / "step-00000040.pt")
    assert state["store"]["fingerprint"] == "fake-0001" and state["data"]["step"] == 40
    loaded = load_export(run)
    assert loaded.config.dim == 16 and loaded.store_config["backbone"] == "tiny"
    for name, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, state["model"][name])
    assert not loaded.model.training


@pytest.mark.parametrize("select", ["sinkhorn", pytest.param("none", marks=pytest.mark.slow)])
def test_resume_equals_straight_run(tmp_path, select):
    store = make_store(videos=2, captions=4)
    model = {**MODEL, "select": select}
    settings = config(steps=6, checkpoint_every=2)
    train(store, tmp_path / "straight", model, settings)
    train(store, tmp_path / "halves", model, settings, stop_after=3)
    assert CheckpointManager(tmp_path / "halves").steps()[-1] == 3
    train(store, tmp_path / "halves", resume=True)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step-00000006.pt")
    halves = load_checkpoint(tmp_path / "halves" / "checkpoints" / "step-00000006.pt")
    for name, value in straight["model"].items():
        torch.testing.assert_close(halves["model"][name], value, rtol=1e-5, atol=1e-6)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "halves" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(set(steps)) and steps[-1] == 6
    assert halves["scheduler"]["last_epoch"] == straight["scheduler"]["last_epoch"] == 6
    torch.testing.assert_close(
        halves["optimizer"]["state"][0]["exp_avg_sq"], straight["optimizer"]["state"][0]["exp_avg_sq"]
    )


def test_resume_rejects_another_store(tmp_path):
    train(make_store(), tmp_path / "run", MODEL, config(steps=2))
    other = make_store(visual_dim=16, fingerprint="other")
    with pytest.raises(UserError, match="visual 12-d.*visual 16-d"):
        train(other, tmp_path / "run", resume=True)
    with pytest.raises(UserError, match="already holds a training run"):
        train(make_store(), tmp_path / "run", MODEL, config(steps=2))
    with pytest.raises(UserError, match="no checkpoint"):
        train(make_store(), tmp_path / "empty", resume=True)


def test_nonfinite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    store = make_store()
    for video_id in store.video_ids:
        video = store.load(video_id)
        video.global_feats[20:] = float("inf")
        video.grid_feats[20:] = float("inf")
    with pytest.raises(TrainingStopped, match=r"step \d+: the loss is not finite"):
        train(store, tmp_path / "run", MODEL, config(steps=30, checkpoint_every=1))
    for step in CheckpointManager(tmp_path / "run").steps():
        state = load_checkpoint(CheckpointManager(tmp_path / "run").path_for(step))
        assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("loss", ["global", "local"])
def test_single_loss_modes_train(tmp_path, loss):
    result = train(make_store(), tmp_path / "run", MODEL, config(steps=4, loss=loss))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    other = "loss_local" if loss == "global" else "loss_global"
    assert rows[-1][other] is None and math.isfinite(rows[-1]["loss"])
    assert result.steps == 4


def test_same_video_negatives_train_on_one_videos_clips_at_a_time(tmp_path, monkeypatch):
    from stg_cli.train.data import ClipDataset

    seen: list[list[int]] = []
    collate = ClipDataset.batch

    def recording(self, sample_ids):
        seen.append([self.owners[int(sample)][0] for sample in sample_ids])
        return collate(self, sample_ids)

    monkeypatch.setattr(ClipDataset, "batch", recording)
    store = make_store(videos=3, captions=4)
    train(store, tmp_path / "run", MODEL, config(steps=3, batch_size=4, negatives="same-video"))
    training_batches = seen[:3]  # then the threshold's calibration reads the clips in order
    assert all(len(videos) == 4 and len(set(videos)) == 1 for videos in training_batches)
    assert sorted(videos[0] for videos in training_batches) == [0, 1, 2]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["negatives"] == "same-video"


def test_bad_batch_size_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="fewer than the batch size"):
        train(make_store(videos=1, captions=2), tmp_path / "run", MODEL, config(batch_size=8))


@pytest.mark.parametrize("field", ["log_every", "checkpoint_every", "keep"])
def test_step_intervals_below_one_are_user_errors(field):
    with pytest.raises(UserError, match=f"--{field.replace('_', '-')} must be >= 1, got 0"):
        config(**{field: 0})


def test_ctrl_c_writes_a_final_checkpoint_and_resumes(tmp_path):
    import signal

    from stg_cli.train import StepLog, TrainingInterrupted

    def on_event(event):
        if isinstance(event, StepLog) and event.step == 2:
            signal.raise_signal(signal.SIGINT)

    store = make_store(videos=2, captions=4)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(store, tmp_path / "run", MODEL, config(steps=6, checkpoint_every=100), on_event=on_event)
    assert stopped.value.result.interrupted and stopped.value.result.steps == 2
    assert CheckpointManager(tmp_path / "run").steps() == [2]
    assert (tmp_path / "run" / "export" / "model.safetensors").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    result = train(store, tmp_path / "run", resume=True)
    assert result.steps == 6


def test_a_run_never_writes_through_symlinks_in_its_folder(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    names = ("config.json", "summary.json", "loss.png", "metrics.jsonl")
    for name in names:
        (run / name).symlink_to(outside)
    result = train(make_store(videos=2, captions=4), run, MODEL, config(steps=2, checkpoint_every=100))
    assert outside.read_text() == "keep me" and result.steps == 2
    assert not any((run / name).is_symlink() for name in names)
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
