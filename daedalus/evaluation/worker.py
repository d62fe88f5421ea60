"""Run one function in an isolated worker process, under a time and memory limit.

Workers are forked from a *forkserver* that has already imported the heavy libraries, so a trial starts in
milliseconds rather than seconds, and a crash, hang or memory blow-up in a trial (a segfault in a native
library, an infinite loop) takes down only that process. The parent watches the wall clock and the
worker's resident memory and kills it when it passes either limit. Every outcome comes back as a
:class:`WorkerResult`; nothing here raises for a failed trial.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from typing import Any

import psutil

from daedalus.evaluation.lifeline import PARENT_ENV, die_with_parent

# Modules the forkserver imports once, so that each forked worker starts warm. The first ties the forkserver's
# life to the run's (see lifeline.py): it must run before the slow imports. Every trial that keeps its models
# saves them with skops: import it once, not per trial.
PRELOAD = ["daedalus.evaluation.lifeline", "daedalus.evaluation.trial", "lightgbm", "xgboost", "catboost",
           "daedalus.spaces.families.torch_mlp", "skops.io"]
_POLL_SECONDS = 0.05
_ctx: Any = None


def _context() -> Any:
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(PRELOAD)
    # Read by lifeline.py in a forkserver started from here (now or by a later Process.start): the process it
    # must die with. Set on every call: a process forked from a run starts a forkserver of its own.
    os.environ[PARENT_ENV] = str(os.getpid())
    return _ctx


@dataclass(frozen=True)
class WorkerResult:
    status: str  # "ok", "error", "timeout", "memory", "crash", "cancelled"
    value: Any = None
    reason: str = ""
    seconds: float = 0.0


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start workers without re-importing the caller's ``__main__`` in them.

    multiprocessing re-imports the main script in every child so that functions defined there can be
    unpickled. Our trial functions never live in ``__main__``, and a user's script without an
    ``if __name__ == "__main__":`` guard would otherwise run its own ``fit`` again inside each worker.
    """
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    if "__spec__" in saved:
        main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back while a worker is being started, and deliver it right after (as KeyboardInterrupt).

    Starting a worker sends the pickled trial to the forkserver; a KeyboardInterrupt in the middle of that
    write left the forkserver a truncated pickle (it printed "pickle data was truncated" on the user's
    terminal) or a started worker that nothing stopped: it was not a daemon, so the interpreter waited for its
    trial to end before exiting."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # If the forkserver (and so the run) is killed, the worker gets SIGKILL instead of running on as an orphan;
    # so do processes the trial forks in turn (a kill -9 of the run gives nobody the chance to stop them).
    die_with_parent()
    os.register_at_fork(after_in_child=die_with_parent)
    # Ctrl-C reaches the whole process group. The run handles it (and kills this worker); a worker that
    # reported its own KeyboardInterrupt would have its trial recorded as failed instead of re-run on resume.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Library warnings from inside a trial (convergence, deprecations) are noise on the user's terminal;
    # a trial that fails reports its reason instead.
    warnings.filterwarnings("ignore")
    try:
        value = fn(*args)
        conn.send(("ok", value, ""))
    except MemoryError:
        conn.send(("memory", None, "out of memory (MemoryError)"))
    except BaseException as exc:  # the trial's own failure, reported, not raised
        tb = traceback.format_exc(limit=8)
        conn.send(("error", None, f"{type(exc).__name__}: {exc}\n{tb}"))
    finally:
        conn.close()


def _tree_rss_mb(proc: psutil.Process) -> float:
    try:
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def run_in_worker(fn: Callable[..., Any], args: tuple[Any, ...], *, timeout: float, memory_mb: float,
                  should_cancel: Callable[[], bool] | None = None) -> WorkerResult:
    """Call ``fn(*args)`` in a fresh worker process and wait for it, within the limits."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    # Not a daemon: joblib refuses to run parallel loops inside daemonic processes. The worker still cannot
    # outlive the run: it is killed below on every path, and by PR_SET_PDEATHSIG if the run itself is killed.
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=False)
    start = time.monotonic()
    status, value, reason = "crash", None, ""
    answered = False  # the worker sent its outcome and is exiting by itself
    try:
        with _main_module_hidden(), _sigint_deferred():
            proc.start()
        send.close()
        watched = psutil.Process(proc.pid)
        while True:
            if recv.poll(_POLL_SECONDS):
                try:
                    status, value, reason = recv.recv()
                    answered = True
                except EOFError:
                    status, reason = "crash", _exit_reason(proc)
                break
            elapsed = time.monotonic() - start
            if not proc.is_alive() and not recv.poll(0):
                status, reason = "crash", _exit_reason(proc)
                break
            if elapsed > timeout:
                status, reason = "timeout", f"timed out after {timeout:.1f} s"
                break
            rss = _tree_rss_mb(watched)
            if rss > memory_mb:
                status, reason = "memory", f"out of memory ({rss:.0f} MB > limit {memory_mb:.0f} MB)"
                break
            if should_cancel is not None and should_cancel():
                status, reason = "cancelled", "cancelled by the run"
                break
    finally:
        if proc.pid is not None:  # started: a Ctrl-C at any point after that still stops the worker
            _stop(proc, graceful=answered)
        send.close()
        recv.close()
    return WorkerResult(status, value, reason, time.monotonic() - start)


def _exit_reason(proc: Any) -> str:
    proc.join(1.0)
    code = proc.exitcode
    if code is not None and code < 0:
        return f"worker crashed (killed by signal {signal.Signals(-code).name})"
    return f"worker crashed (exit code {code})"


def _stop(proc: Any, graceful: bool) -> None:
    """End the worker. One that has sent its answer is exiting on its own: give it a moment, so that it can
    release what it holds (killed mid-exit, it leaks semaphores); anything else is killed at once."""
    if graceful:
        proc.join(2.0)
    if proc.is_alive():
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
        except psutil.NoSuchProcess:
            pass
        proc.kill()
    proc.join(5.0)


def start_early(extra_preload: Sequence[str] = ()) -> None:
    """Start the forkserver without waiting: it imports the model libraries in its own process while the run
    reads and checks the data. ``extra_preload``: modules this run's trials need besides (e.g. Fairlearn);
    they count only if the forkserver is not running yet."""
    ctx = _context()
    if extra_preload:
        ctx.set_forkserver_preload(PRELOAD + [m for m in extra_preload if m not in PRELOAD])
    forkserver.ensure_running()


def warm_up() -> None:
    """Wait until the forkserver is ready, so that its start-up is not charged to the first trial's time."""
    run_in_worker(os.getpid, (), timeout=300, memory_mb=1e9)
