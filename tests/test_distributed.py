"""Runs tests/distributed (the Ray executor on a real two-node cluster) inside a network namespace of its
own with loopback only (`unshare -n`): Ray listens on every interface it has, and tests reach loopback
only. Skipped, with the reason, where Ray is not installed or a network namespace is not allowed."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_the_ray_executor_tests_in_a_loopback_only_network_namespace():
    pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]"')
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: the Ray tests need a network namespace of their own")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = probe.stderr.strip() or probe.returncode
        pytest.skip(f"unshare -n is not allowed here ({reason}): the Ray tests need a network namespace of their own")
    inner = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider -x {HERE / 'distributed'}"
    done = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=HERE.parent, capture_output=True, text=True,
                          timeout=1500, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    print(done.stdout[-5000:])
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
