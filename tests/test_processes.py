"""stg_cli.processes.run_in_pool: a pool that survives its workers' deaths."""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import signal
import time

import pytest

from stg_cli.processes import ignore_interrupts, interrupts_held, process_alive, run_in_pool

KILLER = 3  # the job that kills its worker
FAILING = 5  # the job that raises


def _work(number: int) -> int:
    if number == KILLER:
        os._exit(1)
    if number == FAILING:
        raise ValueError(f"job {number} failed")
    return number * 2


def _new_pool() -> futures.ProcessPoolExecutor:
    context = multiprocessing.get_context("fork")
    return futures.ProcessPoolExecutor(max_workers=2, mp_context=context, initializer=ignore_interrupts)


@pytest.mark.parametrize("in_order", [True, False])
def test_only_the_job_that_kills_its_worker_is_lost(in_order):
    results, errors, lost = {}, {}, []

    def on_result(job: int, future: futures.Future) -> None:
        try:
            results[job] = future.result()
        except ValueError as error:
            errors[job] = str(error)

    run_in_pool(
        range(8),
        lambda pool, job: pool.submit(_work, job),
        _new_pool,
        on_result,
        lost.append,
        ahead=3,
        in_order=in_order,
    )
    assert lost == [KILLER]
    assert errors == {FAILING: f"job {FAILING} failed"}
    assert results == {job: job * 2 for job in range(8) if job not in (KILLER, FAILING)}


def test_in_order_results_come_in_submission_order():
    seen = []
    run_in_pool(
        [4, 0, 2, 1],
        lambda pool, job: pool.submit(_work, job),
        _new_pool,
        lambda job, future: seen.append(job),
        lambda job: None,
        ahead=2,
        in_order=True,
    )
    assert seen == [4, 0, 2, 1]


def test_an_error_in_the_callback_stops_the_workers_and_propagates():
    def on_result(job: int, future: futures.Future) -> None:
        raise RuntimeError("callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        run_in_pool(
            range(4),
            lambda pool, job: pool.submit(_work, job),
            _new_pool,
            on_result,
            lambda job: None,
            ahead=2,
        )


def test_process_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert process_alive(os.getpid()) and not process_alive(int(gone.stdout))
    assert not process_alive(0) and not process_alive(-1)  # process groups, not processes

    def refused(pid: int, signal: int) -> None:  # a process of another user
        raise PermissionError

    monkeypatch.setattr(os, "kill", refused)
    assert process_alive(int(gone.stdout))


def test_a_ctrl_c_while_interrupts_are_held_is_not_lost():
    """Ignoring SIGINT here dropped it; held, it is raised by the end of the block at the latest
    (inside it when another thread of the test process takes the signal)."""
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
