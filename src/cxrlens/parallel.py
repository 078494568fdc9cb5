"""Process pools that never wait forever.

Every process pool in cxrlens goes through this module, for two reasons found the hard way:

* **No fork of a threaded parent.** By the time a stage starts a pool, the parent already runs threads: rich's
  progress refresh, torch's and OpenCV's thread pools. ``fork`` copies only the calling thread, so a child inherits
  the *state* of those pools (mutexes held, worker counts) without their threads. A fresh-clone ``make demo`` hung
  for good this way in one of two runs: every rendering worker blocked in ``cv2.setNumThreads(1)``, which waits for
  OpenCV pool threads that do not exist in the child. Pools here therefore start their workers with ``spawn``
  (a fresh interpreter that inherits no threads and no locks), see :func:`pool_context`.
* **A worker that dies or stops answering ends the command.** :func:`imap_processes` yields results in order and
  raises :class:`WorkerPoolError` (one line naming the stage and what to do; the CLI exits with status 2) when a
  worker dies, or when no result arrives for ``stall_timeout`` seconds — after killing the workers, so nothing is
  left running.

The stall timeout defaults to :data:`DEFAULT_STALL_TIMEOUT_S` and can be changed with the environment variable
``CXRLENS_POOL_TIMEOUT`` (seconds).
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.context
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from cxrlens.errors import CxrlensError

__all__ = [
    "DEFAULT_STALL_TIMEOUT_S",
    "START_METHOD",
    "WorkerPoolError",
    "imap_processes",
    "pool_context",
    "stall_timeout_s",
]

START_METHOD = "spawn"  # never "fork": see the module docstring
DEFAULT_STALL_TIMEOUT_S = 300.0  # no result for this long = the pool is stuck (a render chunk takes < 1 s)
_ENV_TIMEOUT = "CXRLENS_POOL_TIMEOUT"

J = TypeVar("J")
R = TypeVar("R")


class WorkerPoolError(CxrlensError):
    """A process pool's workers died or stopped answering: ``"<stage>: <problem> — <what to do>"``."""

    def __init__(self, stage: str, problem: str, hint: str) -> None:
        self.stage, self.problem, self.hint = stage, problem, hint
        super().__init__(f"{stage}: {problem} — {hint}")


def pool_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context of every pool and DataLoader with workers in cxrlens (``spawn``)."""
    return mp.get_context(START_METHOD)


def stall_timeout_s(default: float = DEFAULT_STALL_TIMEOUT_S) -> float:
    """Seconds without any result after which a pool counts as stuck (``$CXRLENS_POOL_TIMEOUT`` overrides)."""
    raw = os.environ.get(_ENV_TIMEOUT, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise CxrlensError(f"${_ENV_TIMEOUT}={raw!r}: not a number of seconds") from None
    if value <= 0:
        raise CxrlensError(f"${_ENV_TIMEOUT}={raw!r}: must be > 0 seconds")
    return value


def _run_chunk(fn: Callable[[Any], Any], chunk: Sequence[Any]) -> list[Any]:
    return [fn(job) for job in chunk]


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the pool without waiting for its workers: cancel what is queued and kill every worker process."""
    # ProcessPoolExecutor has no public way to kill its workers before Python 3.14 (terminate_workers).
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=5)


def imap_processes(
    fn: Callable[[J], R],
    jobs: Iterable[J],
    *,
    stage: str,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    chunksize: int = 1,
    stall_timeout: float | None = None,
    hint: str = "rerun with --workers 1 to work in the main process, or report the command that hung",
) -> Iterator[R]:
    """Yield ``fn(job)`` for every job, in order, computed by ``workers`` spawned processes.

    Args:
        fn, initializer: module-level functions (they are imported by name in the workers).
        jobs: picklable items; ``chunksize`` of them travel to a worker together.
        stage: what the user ran (named in every error, e.g. ``"data build iu-phantom: rendering"``).
        stall_timeout: seconds without a finished chunk before the pool counts as stuck
            (default :func:`stall_timeout_s`).
        hint: what the user can do, appended to the error.

    Raises:
        WorkerPoolError: a worker died (killed, out of memory, crashed in C code) or no chunk finished within
            ``stall_timeout`` seconds. The workers are killed first. An exception raised by ``fn`` itself
            propagates unchanged.
    """
    if workers < 1:
        raise ValueError("workers must be ≥ 1")
    if chunksize < 1:
        raise ValueError("chunksize must be ≥ 1")
    timeout = stall_timeout_s() if stall_timeout is None else float(stall_timeout)
    it = iter(jobs)

    def next_chunk() -> list[J]:
        chunk: list[J] = []
        for job in it:
            chunk.append(job)
            if len(chunk) == chunksize:
                break
        return chunk

    pool = ProcessPoolExecutor(workers, mp_context=pool_context(), initializer=initializer, initargs=initargs)
    clean = False
    try:
        inflight: deque[Future[list[R]]] = deque()
        while True:
            while len(inflight) < 2 * workers and (chunk := next_chunk()):
                inflight.append(pool.submit(_run_chunk, fn, chunk))
            if not inflight:
                break
            head = inflight.popleft()
            done, _ = wait([head], timeout=timeout)
            if not done:
                raise WorkerPoolError(stage, f"no worker answered for {timeout:g} s (workers stuck; killed)", hint)
            try:
                results = head.result()
            except BrokenProcessPool:
                codes = sorted({p.exitcode for p in (getattr(pool, "_processes", None) or {}).values()} - {None})
                how = f" (exit codes {codes})" if codes else ""
                raise WorkerPoolError(stage, f"a worker process died{how}", hint) from None
            yield from results
        clean = True
    finally:
        if clean:
            pool.shutdown(wait=True)
        else:
            _kill_workers(pool)
