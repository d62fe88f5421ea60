"""Run one function in an isolated worker process, under a time and memory limit.

Workers are forked from a *forkserver* that has already imported the heavy libraries, so a trial starts in
milliseconds rather than seconds, and a crash, hang or memory blow-up in a trial (a segfault in a native
library, an infinite loop) takes down only that process. The parent watches the wall clock and the
worker's resident memory and kills it when it passes either limit. Every outcome comes back as a
:class:`WorkerResult`; nothing here raises for a failed trial.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing import forkserver, resource_tracker
from multiprocessing.connection import Connection
from typing import Any

import psutil

from daedalus.evaluation.lifeline import PARENT_ENV, die_with_parent

# Modules the forkserver imports once, so that each forked worker starts warm. The first ties the forkserver's
# life to the run's (see lifeline.py): it must run before the slow imports. Every trial that keeps its models
# saves them with skops: import it once, not per trial.
PRELOAD = ["daedalus.evaluation.lifeline", "daedalus.evaluation.trial", "lightgbm", "xgboost", "catboost",
           "daedalus.spaces.families.torch_mlp", "skops.io"]
_READY_MODULE = "daedalus.evaluation.pool_ready"  # imported last: the forkserver has loaded everything
_READY_ENV = "DAEDALUS_POOL_READY"  # (pool_ready.READY_ENV; not imported here, so that the CLI stays light)
_POLL_SECONDS = 0.05
_MEMORY_POLL_SECONDS = 0.25
_ctx: Any = None
_preload: list[str] = list(PRELOAD)
_ready_path: str | None = None  # the marker file the running forkserver creates when its imports are done
_ready_seen = False


def _context(extra_preload: Sequence[str] = (), preload: Sequence[str] | None = None) -> Any:
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
    _preload.extend(m for m in extra_preload if m not in _preload)
    _ctx.set_forkserver_preload([*(_preload if preload is None else preload), _READY_MODULE])
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
    """Hold a Ctrl-C back for the few milliseconds a worker (or the forkserver) is being started, and deliver
    it right after, to the handler that was in place (a KeyboardInterrupt by default).

    Starting a worker sends the pickled trial to the forkserver; a KeyboardInterrupt in the middle of that
    write left the forkserver a truncated pickle (it printed "pickle data was truncated" on the user's
    terminal) or a started worker that nothing stopped. Two things are needed: the signal is blocked in this
    thread, so that what is started here inherits it blocked (a process forked or spawned now never sees a
    Ctrl-C meant for the run: no traceback from it), and Python's handler is swapped for one that only takes
    note, because the kernel hands a process's SIGINT to any thread that does not block it (OpenBLAS's,
    rich's), and Python would then raise it here in the main thread all the same.

    Never around a wait: the forkserver's imports are waited for before (``wait_ready``), by polling."""
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a Ctrl-C pending here now reaches ``previous``
        if caught:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


def _import_skops_without_torch() -> None:
    """Import skops (a trial saves its models with it) without torch. skops.io lists scikit-learn's estimators
    by importing every package of scikit-learn, and so torch (sklearn.externals.array_api_compat.torch): 1.4
    of its 2.1 CPU seconds. A cold worker, which runs while the forkserver imports torch anyway, has no use for
    it; the walk ignores an ImportError, which a ``None`` in ``sys.modules`` gives. Only with scikit-learn
    already imported (its own import looks torch up), and on any failure the modules are left for a plain
    import."""
    if "torch" in sys.modules or "skops.io" in sys.modules or "sklearn" not in sys.modules:
        return
    before = set(sys.modules)
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import skops.io  # noqa: F401
    except Exception:
        for name in set(sys.modules) - before:
            del sys.modules[name]
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...], cold: bool = False) -> None:
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
        if cold:
            _import_skops_without_torch()
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
                  should_cancel: Callable[[], bool] | None = None, cold: bool = False) -> WorkerResult:
    """Call ``fn(*args)`` in a fresh worker process and wait for it, within the limits.

    ``timeout`` counts from the call, so it covers a wait for the forkserver's imports too (see
    ``wait_ready``). ``cold=True``: a cheap call that need not wait for them: while the forkserver is still
    importing, the worker is forked from this process instead (it has what a linear model needs), so that a run
    on a busy machine has a model before the model libraries are loaded."""
    worker = Worker(fn, args, timeout=timeout, memory_mb=memory_mb, cold=cold)
    try:
        while True:
            result = worker.poll(_POLL_SECONDS)
            if result is not None:
                return result
            if should_cancel is not None and should_cancel():
                return worker.stop("cancelled", "cancelled by the run")
    finally:
        worker.stop()  # a Ctrl-C at any point still stops the worker


class Worker:
    """One call in a worker process, advanced by :meth:`poll` until it has a :class:`WorkerResult`; several can
    be in flight at once (``evaluation.runner.LocalRunner``). The limits hold from the moment it is made: its
    ``timeout`` covers a wait for the forkserver's imports (polled, never inside ``Process.start()``, so a
    Ctrl-C ends that wait at once). Whatever happens, :meth:`stop` leaves no process behind."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], *, timeout: float, memory_mb: float,
                 cold: bool = False) -> None:
        self.fn, self.args, self.timeout, self.memory_mb = fn, args, timeout, memory_mb
        self.started = time.monotonic()
        self.result: WorkerResult | None = None
        self._proc: Any = None
        self._recv: Connection | None = None
        self._answered = False  # the worker sent its outcome and is exiting by itself
        self._watched: psutil.Process | None = None
        self._next_memory_check = 0.0
        self._stopped = False
        self._forked = cold and not pool_ready()
        if self._forked:
            self._launch(mp.get_context("fork"))
        else:
            _context()
            _ensure_started()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _launch(self, ctx: Any) -> None:
        recv, send = ctx.Pipe(duplex=False)
        # Not a daemon: joblib refuses to run parallel loops inside daemonic processes. The worker still cannot
        # outlive the run: ``stop`` kills it on every path, and PR_SET_PDEATHSIG if the run itself is killed.
        proc = ctx.Process(target=_child, args=(send, self.fn, self.args, self._forked), daemon=False)
        self._proc, self._recv = proc, recv
        try:
            with _main_module_hidden(), _sigint_deferred():
                proc.start()
        finally:
            send.close()
        self._watched = psutil.Process(proc.pid)

    def poll(self, wait: float) -> WorkerResult | None:
        """Wait up to ``wait`` seconds for the worker; its result once it has one (then it is stopped)."""
        if self.result is not None:
            return self.result
        if self._proc is None:
            self._wait_for_pool(wait)
        else:
            self._watch(wait)
        if self.result is not None:
            self.stop()
        return self.result

    def _wait_for_pool(self, wait: float) -> None:
        if pool_ready():
            self._launch(_context())
            return
        pid = _pool_pid()
        if pid is None or not _alive(pid):
            self._finish("crash", "the worker pool (forkserver) died while importing the model libraries")
        elif self.elapsed >= self.timeout:
            self._finish("timeout", f"not started: the worker pool was still importing the model libraries after "
                                    f"{max(self.timeout, 0.0):.1f} s (a busy machine)")
        else:
            time.sleep(wait)

    def _watch(self, wait: float) -> None:
        assert self._recv is not None and self._watched is not None
        if self._recv.poll(wait):
            try:
                status, value, reason = self._recv.recv()
                self._answered = True
                self._finish(status, reason, value)
            except EOFError:
                self._finish("crash", _exit_reason(self._proc))
            return
        if not self._proc.is_alive() and not self._recv.poll(0):
            self._finish("crash", _exit_reason(self._proc))
            return
        if self.elapsed > self.timeout:
            self._finish("timeout", f"timed out after {self.timeout:.1f} s")
            return
        # The worker's tree is found by reading every process of the machine: at each 50-ms poll that was a
        # third of a core on a busy machine, taken from the trial it watches.
        rss = _tree_rss_mb(self._watched) if time.monotonic() >= self._next_memory_check else 0.0
        if rss:
            self._next_memory_check = time.monotonic() + _MEMORY_POLL_SECONDS
        if rss > self.memory_mb:
            self._finish("memory", f"out of memory ({rss:.0f} MB > limit {self.memory_mb:.0f} MB)")

    def _finish(self, status: str, reason: str, value: Any = None) -> None:
        self.result = WorkerResult(status, value, reason, self.elapsed)

    def stop(self, status: str = "cancelled", reason: str = "cancelled by the run") -> WorkerResult:
        """End the worker (if it runs) and return its result: ``status`` and ``reason`` when it had none yet."""
        if self.result is None:
            self._finish(status, reason)
        if not self._stopped:
            self._stopped = True
            if self._proc is not None and self._proc.pid is not None:
                _stop(self._proc, graceful=self._answered)
            if self._recv is not None:
                self._recv.close()
        assert self.result is not None
        return self.result


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


def _pool_pid() -> int | None:
    pid: int | None = getattr(forkserver._forkserver, "_forkserver_pid", None)
    return pid


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ensure_started() -> None:
    """Start the forkserver unless it runs. It is spawned with SIGINT blocked (inherited across exec, and by
    the workers it forks): a Ctrl-C reaches the whole process group, and the forkserver, busy importing its
    libraries, printed a 25-line KeyboardInterrupt traceback. The run handles Ctrl-C; the forkserver exits when
    the run does (it reads the end of the run's pipe)."""
    global _ready_path, _ready_seen
    pid = _pool_pid()
    if pid is not None and _alive(pid):
        return
    if pid is None:
        atexit.register(stop_pool)
    _ready_seen = False
    _ready_path = os.path.join(tempfile.gettempdir(), f"daedalus-pool-{os.getpid()}-{time.monotonic_ns()}")
    os.environ[_READY_ENV] = _ready_path
    # The resource tracker first: starting it unblocks SIGINT in this thread (it blocks it for its own start),
    # which inside the block below would let the forkserver start with SIGINT open.
    resource_tracker.ensure_running()
    try:
        with _sigint_deferred():
            forkserver.ensure_running()
    finally:
        os.environ.pop(_READY_ENV, None)


def stop_pool() -> None:
    """At the run's exit, end the forkserver. It would notice the run's end by itself, but only once its
    imports are done: started late on a busy machine, or by a run stopped with Ctrl-C, it ran on for seconds
    at full CPU, holding the terminal's pipes (a caller reading them waited that long). No worker is running
    at exit (each is stopped where it was started)."""
    pid = _pool_pid()
    if pid is not None and _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    if _ready_path is not None:  # the marker of a forkserver that got ready after the last look at it
        with suppress(OSError):
            os.unlink(_ready_path)


def pool_ready() -> bool:
    """Whether the forkserver has imported its libraries (a worker then starts in milliseconds)."""
    global _ready_seen
    if not _ready_seen and _ready_path is not None and os.path.exists(_ready_path):
        _ready_seen = True
        with suppress(OSError):
            os.unlink(_ready_path)
    pid = _pool_pid()
    return _ready_seen and pid is not None and _alive(pid)


def wait_ready(timeout: float) -> tuple[str, str] | None:
    """Wait up to ``timeout`` seconds for the forkserver's imports; None when it is ready, else the
    (status, reason) of a worker that could not start.

    A poll, so that a Ctrl-C ends it at once: ``Process.start()`` would wait inside a blocking read, with
    SIGINT held back (``_sigint_deferred``) for all of the imports (up to a minute on a busy machine)."""
    _context()
    _ensure_started()
    end = time.monotonic() + timeout
    while not pool_ready():
        pid = _pool_pid()
        if pid is None or not _alive(pid):
            return "crash", "the worker pool (forkserver) died while importing the model libraries"
        if time.monotonic() >= end:
            return "timeout", (f"not started: the worker pool was still importing the model libraries after "
                               f"{max(timeout, 0.0):.1f} s (a busy machine)")
        time.sleep(_POLL_SECONDS)
    return None


def start_early(extra_preload: Sequence[str] = (), preload: Sequence[str] | None = None) -> None:
    """Start the forkserver without waiting: it imports the model libraries in its own process while the run
    reads and checks the data. ``extra_preload``: modules this run's trials need besides (e.g. Fairlearn);
    ``preload``: the modules instead of the table run's (an image run's workers need torch, not the boosters;
    ``lifeline`` first). Both count only if the forkserver is not running yet."""
    _context(extra_preload, preload)
    _ensure_started()
