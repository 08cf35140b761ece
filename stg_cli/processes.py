"""Worker process pools of ``stg extract --workers`` and ``stg ground --workers``.

:func:`run_in_pool` runs jobs in a pool that survives its workers' deaths: the jobs in flight
when a worker dies are redone one at a time, so that only a job that kills its worker alone is
lost.

Ctrl-C belongs to the main process: the workers never see SIGINT (it is blocked from their
first instruction when they are started inside :func:`interrupts_held`, and their initialiser
:func:`ignore_interrupts` ignores it), and the main process ends them with :func:`stop` and keeps
what they finished. Each of W workers gets :func:`threads_per_worker` threads, so that together they use
the machine's cores once. :func:`process_alive` tells whether a process recorded by its id
(a shard's progress record, a scratch folder's owner) still runs on this machine.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

Job = TypeVar("Job")


def threads_per_worker(workers: int) -> int:
    """Threads for each of ``workers`` processes: the machine's cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts as alive:
    signal 0 is refused to it, but it is there). Ids below 1 name no single process: False."""
    if pid < 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ignore_interrupts() -> None:
    """Worker initialiser: Ctrl-C is handled by the main process, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT blocked for the main thread in this block: a Ctrl-C during it is never lost. It is
    raised when the block ends, or at once if another thread of the process (one started
    before the block) takes the signal; elsewhere, or without ``pthread_sigmask``, the block
    runs unchanged.

    The signal is blocked, not ignored: a process started in the block inherits the blocked
    signal, so a Ctrl-C while a spawned worker is still importing gives no traceback there, and
    its initialiser (:func:`ignore_interrupts`) then ignores SIGINT, which also drops one held
    back. Wrap the calls that may start workers (``submit``).
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop(pool: futures.ProcessPoolExecutor) -> None:
    """Cancels the queued jobs and ends the running ones now (their results are lost)."""
    pool.shutdown(wait=False, cancel_futures=True)
    # no public way to end running jobs before Python 3.14 (terminate_workers)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def run_in_pool(
    jobs: Iterable[Job],
    submit: Callable[[futures.ProcessPoolExecutor, Job], futures.Future],
    new_pool: Callable[[], futures.ProcessPoolExecutor],
    on_result: Callable[[Job, futures.Future], None],
    on_lost: Callable[[Job], None],
    ahead: int,
    in_order: bool = False,
    keep_done_on_interrupt: bool = False,
) -> None:
    """Runs every job in worker processes, surviving the death of a worker.

    Args:
        jobs: what to run, in order.
        submit: starts one job in the pool and returns its future (called with SIGINT held
            back, so that a worker started by it never sees Ctrl-C).
        new_pool: a fresh pool (at the start and after a worker died).
        on_result: called with each finished job and its future, which holds the job's result
            or its own exception; in submission order with ``in_order``, else as jobs finish.
        on_lost: called with a job whose worker died while it ran alone: that job killed it.
        ahead: jobs in flight at most.
        keep_done_on_interrupt: on Ctrl-C, pass the jobs finished by then to ``on_result``
            before the workers are stopped.

    When a worker dies the pool breaks and every job in flight is lost with it: they are redone
    one at a time in a fresh pool. Any exception (Ctrl-C included) stops the workers and
    propagates.
    """
    queue: deque[Job] = deque(jobs)
    suspects: deque[Job] = deque()
    pending: dict[futures.Future, tuple[Job, bool]] = {}  # in submission order
    pool = new_pool()
    try:
        while queue or suspects or pending:
            capacity = 1 if suspects else ahead
            while len(pending) < capacity and (suspects or queue):
                alone = bool(suspects)
                source = suspects if alone else queue
                job = source.popleft()
                try:
                    with interrupts_held():
                        future = submit(pool, job)
                except futures.process.BrokenProcessPool:  # a worker died: seen below in pending
                    source.appendleft(job)
                    break
                pending[future] = (job, alone)
            if not pending:  # the pool broke with nothing in flight (an idle worker was killed)
                stop(pool)
                pool = new_pool()
                continue
            if in_order:
                ready = [next(iter(pending))]
                futures.wait(ready)
            else:
                done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                ready = [future for future in pending if future in done]
            lost: list[tuple[Job, bool]] = []
            for future in ready:
                job, alone = pending.pop(future)
                if isinstance(future.exception(), futures.process.BrokenProcessPool):
                    lost.append((job, alone))
                else:
                    on_result(job, future)
            if lost:
                lost.extend(pending.values())
                pending.clear()
                stop(pool)
                pool = new_pool()
                for job, alone in lost:
                    if alone:
                        on_lost(job)
                    else:
                        suspects.append(job)
    except KeyboardInterrupt:
        if keep_done_on_interrupt:
            for future, (job, _) in list(pending.items()):
                if future.done() and not future.cancelled() and future.exception() is None:
                    on_result(job, future)
        stop(pool)
        raise
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=True)
