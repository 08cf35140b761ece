"""Two CPU processes (gloo, DistributedDataParallel) train like one process."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp

from helpers.stores import make_store
from helpers.training import free_port
from stg_cli.train import TrainConfig, load_checkpoint, train

MODEL = {"dim": 16, "frames_u": 8, "frames_t": 4}


def settings(loss: str, steps: int = 6) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=8, lr=3e-3, local_chunk=4, loss=loss, checkpoint_every=100)


def _worker(rank: int, world_size: int, port: int, out: str, loss: str, steps: int = 6) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    train(make_store(), out, MODEL, settings(loss, steps), device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["both", "global"])
def test_two_processes_match_one(tmp_path, loss):
    single = tmp_path / "single"
    train(make_store(), single, MODEL, settings(loss), device="cpu")
    double = tmp_path / "double"
    mp.spawn(_worker, args=(2, free_port(), str(double), loss), nprocs=2, join=True)
    a = load_checkpoint(single / "checkpoints" / "step-00000006.pt")
    b = load_checkpoint(double / "checkpoints" / "step-00000006.pt")
    assert b["world_size"] == 2 and a["world_size"] == 1
    # Each AdamW step moves a weight by up to lr = 3e-3; summing in another order (two
    # processes, other padding) leaves ~1e-5 after 6 steps, far below a wrong gradient scale.
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=1e-3, atol=1e-4)
    assert not (double / "checkpoints" / "step-00000006.pt.tmp").exists()


def test_the_job_id_of_static_rendezvous_names_no_job(monkeypatch):
    from stg_cli.train.distributed import elastic_job

    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert elastic_job() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's id without --rdzv-id
    assert elastic_job() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "grounding-1")
    assert elastic_job() == "grounding-1"


def test_a_run_of_another_job_is_not_resumed(tmp_path, monkeypatch):
    from stg_cli.errors import UserError

    store = make_store()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "first")
    train(store, tmp_path / "run", MODEL, settings("both", steps=2), device="cpu")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "second")
    with pytest.raises(UserError, match="already holds a training run"):
        train(store, tmp_path / "run", MODEL, settings("both", steps=4), device="cpu")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "first")
    result = train(store, tmp_path / "run", MODEL, settings("both", steps=4), device="cpu")
    assert result.steps == 2  # the job's own saved settings (2 steps), not the new ones
