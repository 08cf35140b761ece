"""Multi-node elastic training on torchrun, simulated on this host: two torchrun agents (two
"machines", one gloo worker each) meet through c10d rendezvous; one worker is killed mid-run,
torchrun restarts the job, and training resumes by itself from the last checkpoint and ends
where an uninterrupted run ends."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.training import SMALL_MODEL, free_port, write_training_store
from stg_cli.train import load_checkpoint

TORCHRUN = Path(sys.executable).parent / "torchrun"
ROOT = Path(__file__).resolve().parents[2]
STEPS, EVERY = 600, 100
TRAIN = ["--steps", str(STEPS), "--checkpoint-every", str(EVERY), *SMALL_MODEL, "--device", "cpu", "--json"]

# torchrun shares its rendezvous store with the workers by default and keys each restart by the
# agent's own restart count, which differs between agents after a membership change (one agent
# restarts for a failure, the other for the change): the restarted workers then wait for each
# other under different keys forever (pytorch/pytorch#135712). Without sharing, every round gets
# a store of its own.
ELASTIC_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")]


@pytest.fixture(scope="module")
def feats(tmp_path_factory) -> Path:
    return write_training_store(tmp_path_factory.mktemp("feats") / "store")


def launch_two_nodes(feats: Path, run: Path, job: str) -> list[subprocess.Popen]:
    """Two torchrun agents, as on two machines: ``--nnodes 2 --nproc-per-node 1`` with c10d
    rendezvous at one endpoint. A failure restarts the workers of both nodes, and a restart can
    itself fail while the other node's old worker is still going down: three are allowed."""
    endpoint = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **ELASTIC_ENV}
    command = [
        str(TORCHRUN),
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        endpoint,
        "--rdzv-id",
        job,
        "--max-restarts",
        "3",
        "--rdzv-conf",
        "join_timeout=120",
        "-m",
        "stg_cli",
        "train",
        str(feats),
        "--out",
        str(run),
        *TRAIN,
    ]
    return [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]


def finish(agents: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    """Each agent's exit code, stdout and stderr; agents (and their workers) still running after
    the time limit are killed, so that a failed test leaves no process behind."""
    try:
        results = []
        for agent in agents:
            out, err = agent.communicate(timeout=timeout)
            results.append((agent.returncode, out, err))
        return results
    finally:
        for agent in agents:
            if agent.poll() is None:
                for pid in workers_of(agent):
                    os.kill(pid, signal.SIGKILL)
                agent.kill()
                agent.wait()


def workers_of(agent: subprocess.Popen) -> list[int]:
    """The worker processes torchrun started (its children running stg_cli)."""
    try:
        children = Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split()
        return [int(pid) for pid in children if "stg_cli" in Path(f"/proc/{pid}/cmdline").read_text()]
    except OSError:  # the agent or a child has just ended
        return []


def test_a_killed_worker_restarts_and_resumes_to_the_uninterrupted_result(feats, tmp_path):
    reference = finish(launch_two_nodes(feats, tmp_path / "reference", "reference"))
    assert all(code == 0 for code, _, _ in reference), reference[0][2][-3000:]

    run = tmp_path / "killed"
    agents = launch_two_nodes(feats, run, "killed")
    first = run / "checkpoints" / f"step-{EVERY:08d}.pt"
    deadline = time.monotonic() + 300
    try:
        while not first.exists():
            assert time.monotonic() < deadline and all(a.poll() is None for a in agents), "no checkpoint"
            time.sleep(0.02)
        victims = workers_of(agents[1])
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
    except BaseException:
        with contextlib.suppress(subprocess.TimeoutExpired):
            finish(agents, timeout=0)
        raise
    results = finish(agents)
    assert all(code == 0 for code, _, _ in results), results[1][2][-3000:]
    summary = next(json.loads(out) for _, out, _ in results if out.strip())
    assert summary["steps"] == STEPS and summary["world_size"] == 2
    # the restarted job resumed from a checkpoint instead of starting over
    said = " ".join(" ".join(err.split()) for _, _, err in results)  # the console wraps lines
    resumed_at = [int(part.split(maxsplit=1)[0]) for part in said.split("resuming after step ")[1:]]
    assert resumed_at and all(EVERY <= step < STEPS for step in resumed_at)
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["world_size"] == 2
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == sorted({line["step"] for line in lines})

    expected = load_checkpoint(tmp_path / "reference" / "checkpoints" / f"step-{STEPS:08d}.pt")["model"]
    got = load_checkpoint(run / "checkpoints" / f"step-{STEPS:08d}.pt")["model"]
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)
