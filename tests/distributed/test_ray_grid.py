"""The Ray executor on a real two-node cluster, in a loopback-only network namespace (run by
tests/test_distributed.py): the same prompts as the local executor, a node lost mid-grid, the driver
killed and the grid resumed, and an output directory a node cannot see. Ray is real; the target and the
optimizer are fake servers on 127.0.0.1."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fakeserver import FakeServer, cell_config, scripted, target_args, target_or_optimizer
from ray_cluster import OUTSIDE, TwoNodes, loopback_only

from lm_eval_abo.artifact import store
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.run.grid import run_grid

pytestmark = pytest.mark.skipif(not loopback_only(), reason=OUTSIDE)
TASK = "abo_object_counting_synth"


@pytest.fixture
def cluster():
    nodes = TwoNodes()
    yield nodes
    nodes.close()


def quiet(line):
    pass


def slow(default, seconds: float = 0.25):
    """The server's replies, the target's after `seconds` (so a node can be lost while cells run)."""
    def act(request):
        action = default(request)
        if request.path.endswith("/v1/completions"):
            action.delay_s = seconds
        return action
    return act


def own_models(config, server, seed: int):
    """A cell whose optimizer and target carry its own model names, so the server's log tells cells apart."""
    return replace(config, optimizer=f"openai/fake-{seed}",
                   model_args=target_args(server).replace("model=fake,", f"model=fake-{seed},"))


def attempts(root: Path, name: str) -> list[str]:
    log = root / "grid-logs" / f"{name.replace('/', '__')}.log"
    return [line for line in log.read_text().splitlines() if line.startswith("attempt on")] if log.exists() else []


def finished(run: Path) -> bool:
    """A run evaluated on test: its artifact's last version (only report.md is written after it)."""
    return (run / "best.yaml").exists() and "test" in store.load(run / "best.yaml").scores


def held(run: Path) -> bool:
    """Whether a process still holds the run folder's lock."""
    if not (run / ".lock").exists():
        return False
    with open(run / ".lock") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_four_cells_on_two_nodes_give_the_prompts_of_the_local_executor(cluster, tmp_path):
    with FakeServer(target_or_optimizer) as server:
        def configs(root):
            return [cell_config(server, root, seed) for seed in (1, 2, 3, 4)]

        local = run_grid(configs(tmp_path / "local"), tmp_path / "local", out=quiet)
        on_ray = run_grid(configs(tmp_path / "ray"), tmp_path / "ray", "ray", cluster.address, out=quiet)
    assert [r.status for r in on_ray.reports] == ["done"] * 4

    def best(root):
        return {seed: store.load(root / f"seed-{seed}" / TASK / "ape" / "best.yaml").prompt for seed in (1, 2, 3, 4)}

    assert best(tmp_path / "ray") == best(tmp_path / "local")
    for side in ("optimizer", "target"):
        assert getattr(on_ray.ledger, side).calls == getattr(local.ledger, side).calls
        assert getattr(on_ray.ledger, side).tokens == getattr(local.ledger, side).tokens
    nodes = {line.split("Ray node ")[1][:12] for seed in (1, 2, 3, 4)
             for line in attempts(tmp_path / "ray", f"seed-{seed}/{TASK}/ape")}
    assert len(nodes) == 2, "the cells ran on both nodes"


def test_a_node_lost_mid_grid_the_grid_finishes_and_no_round_runs_twice(cluster, tmp_path):
    seeds = (1, 2, 3, 4)
    worker = cluster.worker.node_id[:12]
    with FakeServer(slow(target_or_optimizer)) as server:
        configs = [own_models(cell_config(server, tmp_path, seed, rounds=2), server, seed) for seed in seeds]
        ended = []
        grid = threading.Thread(
            target=lambda: ended.append(run_grid(configs, tmp_path, "ray", cluster.address, out=quiet)))
        grid.start()
        victim, deadline = None, time.time() + 600
        while victim is None and grid.is_alive() and time.time() < deadline:
            for seed in seeds:  # a cell on the worker node with a round saved and its test evaluation not begun
                run = tmp_path / f"seed-{seed}" / TASK / "ape"
                tried = attempts(tmp_path, f"seed-{seed}/{TASK}/ape")
                if tried and worker in tried[-1] and (run / "state.json").exists() and not (run / "results").exists():
                    victim = seed
                    break
            time.sleep(0.05)
        assert victim is not None, "a cell ran on the worker node"
        cluster.cluster.remove_node(cluster.worker)
        grid.join(900)
        requests = list(server.requests)
    [result] = ended
    assert [r.status for r in result.reports] == ["done"] * 4
    for seed in seeds:
        run = tmp_path / f"seed-{seed}" / TASK / "ape"
        artifact = store.load(run / "best.yaml")
        assert {"test", "baseline_test", "test_comparison"} <= set(artifact.scores)
        assert (run / artifact.scores["test"]["results_file"]).is_file() and (run / artifact.export["yaml"]).is_file()
        assert [r["round"] for r in artifact.trace] == [0, 1, 2], "each round once in the ledger's trace"
        asked = [r for r in requests if r.body.get("model") == f"fake-{seed}"]
        chat = [r for r in asked if r.path.endswith("/chat/completions")]
        completions = [r for r in asked if r.path.endswith("/v1/completions")]
        usage = artifact.usage
        if seed != victim:  # what the server answered is what the cell's ledger holds
            assert (len(chat), len(completions)) == (usage["optimizer"]["calls"], usage["target"]["calls"])
            continue
        log = (tmp_path / "grid-logs" / f"seed-{seed}__{TASK}__ape.log").read_text()
        tried = attempts(tmp_path, f"seed-{seed}/{TASK}/ape")
        assert len(tried) == 2 and worker in tried[0] and worker not in tried[1]
        assert "resuming " in log and " after round " in log, "the retry continued from the saved round"
        # only the round the node died in was asked again: round 0's call (saved before the loss) went out once
        assert [r.text for r in chat].count(chat[0].text) == 1
        largest = max(r["optimizer"]["calls"] for r in artifact.trace)
        assert usage["optimizer"]["calls"] <= len(chat) <= usage["optimizer"]["calls"] + largest
        largest = max(max(r["target"]["calls"] for r in artifact.trace), usage["test"]["calls"])
        assert usage["target"]["calls"] <= len(completions) <= usage["target"]["calls"] + largest
    written = json.loads((tmp_path / "grid.json").read_text())
    assert written["ledger"]["optimizer"]["calls"] == sum(
        store.load(tmp_path / f"seed-{s}" / TASK / "ape" / "best.yaml").usage["optimizer"]["calls"] for s in seeds)


def test_resume_after_the_driver_is_killed_skips_the_finished_cells(cluster, tmp_path):
    table = tmp_path / "table"
    with FakeServer(slow(scripted, 0.1)) as server:
        command = [sys.executable, "-m", "lm_eval_abo", "paper-table", "--tasks", TASK, "--apo-methods", "ape,opro",
                   "--rounds", "1", "--beam", "1", "--train-limit", "4", "--dev-limit", "3", "--test-limit", "3",
                   "--minibatch", "2", "--model", "local-completions", "--model_args", target_args(server),
                   "--optimizer", "openai/fake", "--optimizer_args", f"api_base={server.base_url},api_key=x",
                   "--no-optimizer-cache", "--output", str(table),
                   "--executor", "ray", "--ray-address", cluster.address]
        driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        names = [f"{TASK}/{m}" for m in ("ape", "opro", "abo", "abo-ablation")] + [f"hint-never/{TASK}/abo"]
        runs = {name: table / name for name in names}  # by cell name
        deadline, done = time.time() + 600, {}
        try:
            while not done and driver.poll() is None and time.time() < deadline:
                done = {m: (run / "best.yaml").read_bytes() for m, run in runs.items() if finished(run)}
                time.sleep(0.05)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait()
        while any(held(run) for run in runs.values()) and time.time() < deadline:
            time.sleep(0.1)  # Ray ends the killed driver's tasks; until then a cell may still finish
        done = {m: (run / "best.yaml").read_bytes() for m, run in runs.items() if finished(run)}
        assert done and len(done) < len(runs), f"killed with {sorted(done)} finished"
        rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    cells = {c["name"]: c for c in json.loads((table / "grid.json").read_text())["cells"]}
    assert {m for m, c in cells.items() if c["status"] == "done earlier"} == set(done)
    assert all(cells[m]["status"] == "done" for m in runs if m not in done)
    for name, before in done.items():
        assert (runs[name] / "best.yaml").read_bytes() == before
        assert len(attempts(table, name)) == 1
    assert json.loads((table / "paper_table.json").read_text())["rows"][-1]["row"] == "ABO-ablation run"


def test_an_output_directory_a_node_cannot_see_is_refused_in_one_line(cluster, tmp_path):
    import ray

    shared = tmp_path / "shared"
    (shared / "out").mkdir(parents=True)
    # a third node whose file system has an empty folder mounted over `shared`
    blind = subprocess.Popen(["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {shared} && exec "
                              f"{Path(sys.executable).parent / 'ray'} start --address={cluster.address} "
                              "--num-cpus=1 --block"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        deadline = time.time() + 120
        while len([n for n in ray.nodes() if n["Alive"]]) < 3 and time.time() < deadline:
            time.sleep(0.5)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 3
        with FakeServer(target_or_optimizer) as server:
            with pytest.raises(AboError) as refused:
                run_grid([cell_config(server, shared / "out", 1)], shared / "out", "ray", cluster.address, out=quiet)
            assert not server.requests, "refused before the first call"
    finally:
        blind.send_signal(signal.SIGTERM)
        blind.wait(60)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"--output {shared / 'out'} is not visible from 1 of 3 Ray nodes")
    assert message.endswith("the output directory must be storage every node sees at the same path")
    assert not (shared / "out" / "seed-1").exists() and list((shared / "out").iterdir()) == []
