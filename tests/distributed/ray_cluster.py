"""A real two-node Ray cluster on this machine for the distributed tests (`ray.cluster_utils.Cluster`:
separate raylets, a real GCS, real scheduling), and the check that these tests run in a network namespace
whose only interface is loopback: Ray listens on every interface it has, and tests reach loopback only."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

OUTSIDE = ("Ray runs only inside a loopback-only network namespace; tests/test_distributed.py runs these tests "
           "in one (unshare -n)")


def loopback_only() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


class TwoNodes:
    """A head and a worker node of one CPU each; `worker` is the node a test may remove."""

    def __init__(self):
        from ray.cluster_utils import Cluster

        # short: Ray's socket paths live under it and must stay under the kernel's 108 characters
        self.temp = Path(tempfile.mkdtemp(prefix="abo-ray-", dir="/tmp"))
        (self.temp / "ray").mkdir()
        self._env = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED")}
        os.environ.update(RAY_TMPDIR=str(self.temp), RAY_USAGE_STATS_ENABLED="0")
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        self.worker = self.cluster.add_node(num_cpus=1)
        self.cluster.wait_for_nodes()

    @property
    def address(self) -> str:
        return self.cluster.address

    def close(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()
        for key, value in self._env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.temp, ignore_errors=True)
