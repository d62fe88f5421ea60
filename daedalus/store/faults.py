"""Deterministic crash points for the fault-injection tests (``tests/test_fault_injection.py``).

``crash_point("name")`` kills its own process with SIGKILL (no cleanup, no ``finally``, no atexit: what a
power cut or the OOM killer does) when the environment variable ``DAEDALUS_CRASH_AT`` names that point,
optionally with the hit to crash on: ``DAEDALUS_CRASH_AT=trial_recorded:3`` kills at the third time the point
is passed. Anywhere else it costs one dictionary lookup. Points sit at the boundaries between a build's
stages, where a crash leaves the most distinct partial state on disk.
"""

from __future__ import annotations

import os
import signal

ENV = "DAEDALUS_CRASH_AT"
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
