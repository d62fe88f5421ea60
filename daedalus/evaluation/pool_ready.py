"""Imported last by the forkserver, after the model libraries: it tells the run that the pool can start workers.

The run polls for the file named by ``DAEDALUS_POOL_READY`` (``worker.wait_ready``) instead of blocking inside
``Process.start()``, which waits for the forkserver's imports and cannot be interrupted cleanly. Nothing heavy
is imported here: this module is the marker, not a library.
"""

from __future__ import annotations

import os

READY_ENV = "DAEDALUS_POOL_READY"

_path = os.environ.get(READY_ENV)
if _path:
    with open(_path, "w", encoding="ascii") as marker:
        marker.write(str(os.getpid()))
