"""Worker process pools of ``stg extract --workers`` and ``stg ground --workers``.

Ctrl-C belongs to the main process: the workers ignore SIGINT (from their first instruction
when they are started inside :func:`interrupts_ignored`, else from their initialiser
:func:`ignore_interrupts`), and the main process ends them with :func:`stop` and keeps what they
finished. Each of W workers gets :func:`threads_per_worker` threads, so that together they use
the machine's cores once.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def threads_per_worker(workers: int) -> int:
    """Threads for each of ``workers`` processes: the machine's cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def ignore_interrupts() -> None:
    """Worker initialiser: Ctrl-C is handled by the main process, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """SIGINT ignored in this block, in the main thread (elsewhere the block runs unchanged).

    A spawned process starts with the main process's ignored SIGINT and Python then leaves it
    ignored, so a Ctrl-C while a worker is still importing gives no traceback there. Wrap the
    calls that may start workers (``submit``); a Ctrl-C during the block itself is lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def stop(pool: futures.ProcessPoolExecutor) -> None:
    """Cancels the queued jobs and ends the running ones now (their results are lost)."""
    pool.shutdown(wait=False, cancel_futures=True)
    # no public way to end running jobs before Python 3.14 (terminate_workers)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
