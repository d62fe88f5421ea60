"""A Ray cluster on loopback for the tests: a head (no CPUs: it only schedules) and two worker nodes of one CPU
each, as ``ray start --head`` and ``ray start --address`` would make on three machines. Started once per test
process, when a test first asks for it, and stopped at the process's exit."""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

from daedalus.evaluation.ray_runner import connect

REPO = Path(__file__).resolve().parents[1]

_cluster: Any = None


def loopback_cluster() -> Any:
    """The running ``ray.cluster_utils.Cluster`` (its ``address`` is what ``--ray`` takes)."""
    global _cluster
    if _cluster is None:
        from ray.cluster_utils import Cluster

        # The nodes' workers import the tests' job functions (tests.test_runner_contract.double, ...), as a real
        # cluster's nodes have the user's code installed.
        paths = (str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH"))  # (pytest imports test modules by
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)  # their bare name, from tests/)
        _cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(2):
            _cluster.add_node(num_cpus=1)
        _cluster.wait_for_nodes()
        # This process stays connected: runners then leave the connection open, and the nodes' Ray workers
        # (each with its forkserver warm) serve every test of the process.
        connect(_cluster.address)
        atexit.register(_stop)
    return _cluster


def _stop() -> None:
    import ray

    ray.shutdown()  # (a driver still connected: the head cannot be removed under it)
    _cluster.shutdown()
