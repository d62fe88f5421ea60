"""Ctrl-C in the ``daedalus`` command: it ends any command within ``INTERRUPT_GRACE_SECONDS``, quietly (one
line, exit status 130), with the resume command only when a run exists that ``daedalus resume`` can continue.

Kept apart from ``cli.py`` and free of heavy imports: it is installed before any library is imported, and it
must work while the main thread is anywhere, an import included.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

EXIT_INTERRUPTED = 130
INTERRUPT_GRACE_SECONDS = 1.5  # after a Ctrl-C, the command exits by itself within this, or is made to
_run_dir: Path | None = None  # the run this command builds or resumes, once known (for the resume hint)


def set_run_dir(run_dir: Path) -> Path:
    global _run_dir
    _run_dir = Path(run_dir)
    return _run_dir


def _resumable(run_dir: Path | None) -> bool:
    """Whether 'daedalus resume' can continue this run: its record, training rows and (for a table) study
    are written, and it has not finished. Read directly: this runs after a Ctrl-C, perhaps before any import."""
    if run_dir is None:
        return False
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or info.get("status") == "finished" or not (run_dir / "train.parquet").exists():
        return False
    return info.get("kind") == "image" or "storage" in info


def interrupted_message() -> str:
    hint = f"; continue with 'daedalus resume {_run_dir}'" if _resumable(_run_dir) else ""
    return f"daedalus: interrupted{hint}\n"


class _Interrupts:
    """Ctrl-C ends the command within ``INTERRUPT_GRACE_SECONDS``, whatever it is doing.

    Python raises KeyboardInterrupt wherever the main thread is when the signal's handler runs. Inside a
    weakref callback or a ``__del__`` (the import system's module-lock callbacks, during the CLI's first
    seconds) the exception is "ignored" and the build ran on to its end; a library's ``except BaseException``
    can eat it too. So: a KeyboardInterrupt that Python reports as unraisable is raised again (the signal is
    sent anew from another thread, so that it lands outside the callback), and a watchdog thread ends the
    process if it is still running when the grace period is over. The watchdog hears the signal through
    Python's wakeup fd, written the moment it arrives, even while the main thread is inside a long C call.
    Exiting that way is no worse than a kill -9, which a run survives (``daedalus resume``); the forkserver is
    ended first, taking its workers."""

    def __init__(self) -> None:
        self.told = False  # the message is printed (by main's handler)
        self.swallowed = threading.Event()
        self._previous_hook = sys.unraisablehook
        self._wake_r, self._wake_w = socket.socketpair()

    def install(self) -> None:
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGINT, self._on_sigint)
        sys.unraisablehook = self._on_unraisable
        threading.Thread(target=self._watch, name="daedalus-interrupts", daemon=True).start()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def _on_unraisable(self, unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            self.swallowed.set()
            return
        self._previous_hook(unraisable)

    def _watch(self) -> None:
        while signal.SIGINT not in self._wake_r.recv(64):
            pass
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            if self.swallowed.wait(min(left, 0.05)):
                self.swallowed.clear()
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        worker = sys.modules.get("daedalus.evaluation.worker")
        if worker is not None:
            worker.stop_pool()
        if not self.told:
            os.write(2, interrupted_message().encode())
        os._exit(EXIT_INTERRUPTED)


_interrupts: _Interrupts | None = None


def install() -> None:
    global _interrupts
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started to ignore it ('cmd &' in a script): it does
        return
    if _interrupts is None and threading.current_thread() is threading.main_thread():
        _interrupts = _Interrupts()
        _interrupts.install()


def mark_told() -> None:
    """The message was printed (by the command's own handler): the watchdog does not print it again."""
    if _interrupts is not None:
        _interrupts.told = True


def exit_interrupted() -> NoReturn:
    """End the console command with status 130. Not by returning: after a KeyboardInterrupt that was caught
    here, the interpreter still ended 3 of 20 interrupted builds by SIGINT at its exit (status -2; CPython keeps
    an "unhandled KeyboardInterrupt" flag that code run through its C API can set). The exit functions (the
    forkserver's end) still run; the interpreter's teardown is skipped, as for a kill."""
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(EXIT_INTERRUPTED)
