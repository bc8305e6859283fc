"""A grid of 8 `optimize` runs against a served target that takes 1 s a request: `--executor local` (one
run after another) against `--executor ray` on a real Ray cluster of a head and 2 worker nodes of one CPU
each (`ray.cluster_utils.Cluster`), measured in one run; and Ray's start-up cost.

The target is bench/latency_server.py, a SIMULATED API (`local-completions`, one request at a time per run,
1 s each; it answers many runs at once, as a GPU server or a hosted API does); the optimizer is the same
server's instant chat endpoint. So the figures show what running cells side by side buys when each waits
on a served target's latency, not model speed. Each run: ape, rounds 1, beam 1, train 4, dev 3, test 3,
minibatch 2, one paraphrase (12 target requests), its own seed; `--dev` and `--test` make the runs larger.

Ray listens on every interface it has, so the benchmark runs in a network namespace of its own with
loopback only: it re-runs itself under `unshare -n` (root, or a user namespace) when it is not in one.

    python bench/grid.py            # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import record
from batched_scoring import start_server

PORT = 8131


def in_namespace() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def configs(root: Path, args, delay_port: int):
    from lm_eval_abo.config import OptimizeConfig

    return [OptimizeConfig(
        task=record.TASK, method="ape", model="local-completions",
        model_args=(f"model=simulated,base_url=http://127.0.0.1:{delay_port}/v1/completions,num_concurrent=1,"
                    "tokenizer_backend=None,tokenized_requests=False,max_retries=1"),
        optimizer="openai/simulated",
        optimizer_args={"api_base": f"http://127.0.0.1:{delay_port}/v1", "api_key": "none"},
        optimizer_cache=None, rounds=1, beam=1, train_limit=4, dev_limit=args.dev, test_limit=args.test, minibatch=2,
        method_args={"paraphrases": 1}, seed=seed, output=str(root / f"seed-{seed}"))
        for seed in range(1, args.cells + 1)]


def best_prompts(root: Path, cells: int) -> list:
    from lm_eval_abo.artifact import store

    return [store.load(root / f"seed-{seed}" / record.TASK / "ape" / "best.yaml").prompt
            for seed in range(1, cells + 1)]


def measure(args) -> None:
    from ray.cluster_utils import Cluster

    from lm_eval_abo.run.grid import run_grid

    load_at_start = record.header("A grid of optimize runs: executor local against executor ray on 2 worker nodes")
    work = Path(tempfile.mkdtemp(prefix="abo-grid-", dir="/tmp"))  # short: Ray's socket paths live under it
    (work / "ray").mkdir()
    os.environ.update(RAY_TMPDIR=str(work), RAY_USAGE_STATS_ENABLED="0")
    server = start_server(PORT, args.delay)
    cluster = None
    try:
        quiet = lambda line: None  # noqa: E731
        with record.stopwatch() as elapsed:
            local = run_grid(configs(work / "local", args, PORT), work / "local", out=quiet, cell_out=quiet)
        local_s = elapsed()
        with record.stopwatch() as elapsed:
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
            for _ in range(2):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
        start_s = elapsed()
        with record.stopwatch() as elapsed:
            on_ray = run_grid(configs(work / "ray", args, PORT), work / "ray", "ray", cluster.address, out=quiet)
        ray_s = elapsed()
        same = best_prompts(work / "local", args.cells) == best_prompts(work / "ray", args.cells)
        failed = len(local.failed) + len(on_ray.failed)
    finally:
        if cluster is not None:
            cluster.shutdown()
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        {"executor": "local (one cell at a time)", "seconds": local_s, "speedup": 1.0},
        {"executor": "ray, 2 worker nodes (grid only)", "seconds": ray_s, "speedup": local_s / ray_s},
        {"executor": "ray, 2 worker nodes (with the cluster's start)", "seconds": ray_s + start_s,
         "speedup": local_s / (ray_s + start_s)},
    ]
    print(record.table(rows))
    print(f"\nRay cluster start (head and 2 worker nodes): {start_s:.1f} s; target requests per grid: "
          f"{local.ledger.target.calls} (local) and {on_ray.ledger.target.calls} (ray); the same best prompts: {same}; "
          f"failed cells: {failed}; load average {record.load_average()}")
    record.save("grid", {"load_average_1min_at_start": load_at_start, **vars(args),
                         "local_s": round(local_s, 1), "ray_s": round(ray_s, 1), "ray_start_s": round(start_s, 1),
                         "speedup": round(local_s / ray_s, 2),
                         "speedup_with_start": round(local_s / (ray_s + start_s), 2),
                         "target_requests": [local.ledger.target.calls, on_ray.ledger.target.calls],
                         "same_best_prompts": same, "failed_cells": failed})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the simulated target takes per request")
    parser.add_argument("--dev", type=int, default=3, help="dev examples of each run (each candidate is scored on all)")
    parser.add_argument("--test", type=int, default=3, help="test examples of each run (the baseline and the best)")
    args = parser.parse_args()
    if in_namespace():
        measure(args)
        return
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode:
        sys.exit("bench/grid.py: Ray needs a network namespace with loopback only, and unshare -n is not allowed here")
    inner = f"ip link set lo up && exec {sys.executable} {' '.join(sys.argv)}"
    sys.exit(subprocess.run(["unshare", "-n", "sh", "-c", inner]).returncode)


if __name__ == "__main__":
    main()
