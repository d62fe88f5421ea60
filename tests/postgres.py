"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, started on a free local port.

PostgreSQL refuses to run as root, so when the tests run as root (as CI does) the server runs as 'nobody'.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's '{name}' is not installed; install the 'postgresql' package "
                           "(.ci/run does) to run the PostgreSQL storage tests")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL of a fresh, empty server; stops and removes it afterwards."""
    root = tempfile.mkdtemp(prefix="daedalus-pg-")
    data = os.path.join(root, "data")
    as_user: list[str] = []
    if os.geteuid() == 0:
        os.chmod(root, 0o777)
        as_user = ["runuser", "-u", "nobody", "--"]
    port = _free_port()
    try:
        subprocess.run([*as_user, _binary("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True)
        subprocess.run([*as_user, _binary("pg_ctl"), "-D", data, "-w", "-l", os.path.join(root, "log"),
                        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, _binary("pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
