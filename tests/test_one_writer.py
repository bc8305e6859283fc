"""One writer per run directory, and caches that several runs share.

Real `lm-eval-abo optimize` processes (target and optimizer on the scripted server of tests/fakeserver.py,
reached over HTTP as lm-eval's `local-completions` and litellm reach any server) meet on one run
directory, are killed while they hold it, and share the optimizer's and lm-eval's caches; the embedded
models do the same in the slow test."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
from conftest import bin_path, rule_lm, run_cli
from fakeserver import FakeServer, optimize_command, target_args, target_or_optimizer
from reliability import Section, code, normalise

from lm_eval_abo import cli
from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.lock import LOCK_NAME, FolderLock
from lm_eval_abo.run.optimize import optimize
from lm_eval_abo.run.paper_table import paper_table

TASK = "abo_object_counting_synth"
SECTION = Section("one-writer", "One writer per run directory, shared caches (tests/test_one_writer.py)", [
    "second run on a run directory", "second run, embedded models", "run killed while it holds the lock",
    "lock left by a power loss", "paper-table", "shared caches"])


table = SECTION.fixture()


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def holder(run_dir) -> dict:
    text = (run_dir / LOCK_NAME).read_text()
    return json.loads(text) if text else {}


class Held:
    """A scripted server that holds the first request asking for a paraphrase (round 1 of an ape run,
    after round 0 is saved) until released."""

    def __init__(self, server: FakeServer):
        self.reached, self.release = threading.Event(), threading.Event()
        server.on_request = self._hold

    def _hold(self, request) -> None:
        if "Write a variation" in request.text and not self.reached.is_set():
            self.reached.set()
            self.release.wait(300)


def test_a_second_run_on_a_run_directory_stops_at_once_naming_the_first(tmp_path):
    with FakeServer(target_or_optimizer) as server:
        held = Held(server)
        command = optimize_command(server, target_args(server), "runs", 1)
        first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert held.reached.wait(300), "the first run never reached round 1"
            requests = len(server.requests)
            second = run_cli(*command, cwd=tmp_path, check=False)
            resumed = run_cli(*command, "--resume", cwd=tmp_path, check=False)
            asked = len(server.requests) - requests
        finally:
            held.release.set()
            _, err = first.communicate(timeout=600)
    run_dir = tmp_path / "runs" / TASK / "ape"
    expected = (f"lm-eval-abo: error: runs/{TASK}/ape is in use by process {first.pid} on {socket.gethostname()} "
                "(since ")
    for refused in (second, resumed):
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert refused.stderr.strip().splitlines()[-1].startswith(expected), refused.stderr[-2000:]
    assert asked == 0, "the refused runs asked neither model anything"
    assert first.returncode == 0, err[-3000:]
    assert [r["round"] for r in store.load(run_dir / "best.yaml").trace] == [0, 1]
    assert holder(run_dir) == {}, "a run that ends lets go of its lock"
    SECTION.record("second run on a run directory",
                   "`optimize` started twice on one `--output` (real processes; the first waits in round 1), "
                   "then once more with `--resume`",
                   f"each second run: exit 2 at once, before any model call: "
                   f"{code(normalise(last_line(second.stderr), tmp_path))}; the first run finishes undisturbed")


def test_a_lock_left_by_a_killed_run_is_taken_over_and_resume_continues(tmp_path):
    with FakeServer(target_or_optimizer) as server:
        held = Held(server)
        command = optimize_command(server, target_args(server), "runs", 1)
        first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert held.reached.wait(300), "the run never reached round 1"
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(60) == -signal.SIGKILL
        finally:
            held.release.set()
        run_dir = tmp_path / "runs" / TASK / "ape"
        assert holder(run_dir)["pid"] == first.pid, "the killed run's lock file still names it"
        resumed = run_cli(*command, "--resume", cwd=tmp_path)
    said = resumed.stdout + resumed.stderr
    note = next(line for line in said.splitlines() if "taking over the lock" in line)
    assert f"process {first.pid} on {socket.gethostname()}" in note and "resuming" in said
    assert [r["round"] for r in store.load(run_dir / "best.yaml").trace] == [0, 1]
    SECTION.record("run killed while it holds the lock",
                   "`optimize` SIGKILLed in round 1 (the kernel releases its `flock`; its lock file still names it), "
                   "then `--resume`",
                   f"the lock is taken over with a note ({code(normalise(note, tmp_path))}); the run continues "
                   "from round 0 and finishes")


def small(tmp_path, server, **overrides) -> OptimizeConfig:
    settings = dict(task=TASK, method="ape", optimizer="openai/fake", optimizer_args={"api_base": server.base_url, "api_key": "x"},
                    rounds=1, beam=1, train_limit=4, dev_limit=3, test_limit=3, minibatch=2,
                    method_args={"paraphrases": 1}, optimizer_cache=None, output=str(tmp_path / "runs"))
    return OptimizeConfig(**{**settings, **overrides})


def test_a_lock_file_left_by_a_power_loss_is_taken_over(tmp_path):
    run_dir = tmp_path / "runs" / TASK / "ape"
    run_dir.mkdir(parents=True)
    left = {"pid": 4242, "host": "crashed-host", "since": "2025-01-01T00:00:00+0000"}
    (run_dir / LOCK_NAME).write_text(json.dumps(left))  # a file that names a holder, locked by nobody
    lines = []
    with FakeServer() as server:
        outcome = optimize(small(tmp_path, server), out=lines.append, lm=rule_lm())
    note = next(line for line in lines if "taking over" in line)
    assert "process 4242 on crashed-host (since 2025-01-01T00:00:00+0000)" in note
    assert outcome.artifact.exists() and holder(run_dir) == {}
    SECTION.record("lock left by a power loss",
                   "a run directory whose lock file names a process on another host that holds no lock (what a "
                   "power loss leaves)", f"taken over with a note: {code(normalise(note, tmp_path))}; the run goes on")


def test_paper_table_locks_its_folder_and_each_step_its_run_directory(tmp_path, capsys):
    folder = tmp_path / "table"
    with FolderLock(folder, "paper-table"):
        exit_code = cli.main(["paper-table", "--tasks", TASK, "--apo-methods", "ape", "--output", str(folder)])
    err = capsys.readouterr().err
    assert exit_code == 2 and last_line(err).startswith(f"lm-eval-abo: error: {folder} is in use by process {os.getpid()}")
    with FakeServer(target_or_optimizer) as server:
        config = small(tmp_path, server, output=str(folder), model="local-completions", model_args=target_args(server))
        step = folder / TASK / "ape"
        with FolderLock(step, "optimize run"):
            table = paper_table(config, [TASK], ["ape"], out=lambda line: None)
    failed = {cell["name"]: cell["error"] for cell in table["failed"]}
    assert failed[f"{TASK}/ape"].startswith(f"{step} is in use by process {os.getpid()}")
    assert [r["row"] for r in table["rows"]][:3] == ["zero-shot CoT", "few-shot CoT", "demonstrations only"]
    assert "best APO method" not in {r["row"] for r in table["rows"]}
    SECTION.record("paper-table",
                   "`paper-table` on an output folder another paper-table holds; then on a free folder whose `ape` "
                   "run directory an `optimize` holds",
                   f"exit 2 at once: {code(normalise(last_line(err), tmp_path))}; the second runs every other step: the "
                   "held one fails with the same message naming that run directory, in the grid's table and the "
                   "table's `failed`, and its row is left out")


def test_runs_that_share_the_caches_at_once_all_finish_and_fill_them(tmp_path):
    """Two processes, each its own run directory, one optimizer cache and one lm-eval target cache."""
    caches = {"optimizer_cache": str(tmp_path / "optimizer-cache"), "use_cache": str(tmp_path / "target-cache" / "t")}
    flags = ["--optimizer-cache", caches["optimizer_cache"], "--use_cache", caches["use_cache"]]
    with FakeServer(target_or_optimizer) as server:
        procs = [subprocess.Popen(optimize_command(server, target_args(server), f"runs{i}", 1, *flags), cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        errors = [p.communicate(timeout=900)[1] for p in procs]
        asked = len(server.requests)
        config = small(tmp_path, server, output=str(tmp_path / "after"), model="local-completions",
                       model_args=target_args(server), test_limit=2, dev_limit=2, gen_kwargs={"max_gen_toks": 24}, **caches)
        optimize(config, out=lambda line: None)
        asked_after = len(server.requests) - asked
    for proc, err in zip(procs, errors):
        assert proc.returncode == 0 and "database is locked" not in err, err[-3000:]
    artifacts = [store.load(tmp_path / d / TASK / "ape" / "best.yaml") for d in ("runs0", "runs1", "after")]
    assert len({json.dumps(a.scores["test"] | {"results_file": ""}, sort_keys=True) for a in artifacts}) == 1
    assert len({a.prompt.sha256() for a in artifacts}) == 1, "the runs made the same choices"
    assert asked_after == 0, "a third run is answered from the caches the two filled"
    databases = list((tmp_path / "target-cache").glob("*.db"))
    assert len(databases) == 1
    with sqlite3.connect(databases[0]) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        cached = db.execute("SELECT COUNT(*) FROM unnamed").fetchone()[0]
    assert cached > 0
    SECTION.record("shared caches",
                   "two `optimize` processes at once, each with its own `--output`, sharing `--optimizer-cache` "
                   "(litellm's disk cache) and `--use_cache` (lm-eval's sqlite cache); then a third run",
                   f"both finish (no `database is locked`) with the same prompt and scores; the sqlite cache passes "
                   f"`PRAGMA integrity_check`; the third run makes no request to either model ({cached} target "
                   "answers cached)")


@pytest.mark.slow
def test_two_real_runs_on_one_directory_with_the_embedded_models(tmp_path):
    command = [bin_path("lm-eval-abo"), "optimize", "--task", TASK, "--method", "ape", "--rounds", "0", "--beam", "1",
               "--train-limit", "4", "--dev-limit", "3", "--test-limit", "3", "--minibatch", "2",
               "--gen_kwargs", "max_gen_toks=48", "--output", "runs", "--optimizer-cache", str(tmp_path / "cache")]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "runs" / TASK / "ape"
    deadline = time.monotonic() + 300
    while not ((run_dir / LOCK_NAME).exists() and holder(run_dir)) and first.poll() is None:
        assert time.monotonic() < deadline, "the first run never took its lock"
        time.sleep(0.2)
    second = run_cli(*command, cwd=tmp_path, check=False)
    _, err = first.communicate(timeout=1800)
    assert second.returncode == 2 and last_line(second.stderr).startswith(
        f"lm-eval-abo: error: runs/{TASK}/ape is in use by process {first.pid} on"), second.stderr[-2000:]
    assert first.returncode == 0, err[-3000:]
    assert store.load(run_dir / "best.yaml").scores["test"]["n"] == 3
    SECTION.record("second run, embedded models",
                   "two `lm-eval-abo optimize` processes with the default embedded models (gemma-3-270m, "
                   "Qwen2.5-Coder-0.5B) on one `--output`, the second started once the first holds the lock",
                   f"the second: exit 2, {code(normalise(last_line(second.stderr), tmp_path))}; the first finishes")


def test_the_lock_is_not_taken_by_a_dry_run_and_a_failed_start_leaves_no_folder(tmp_path):
    with FakeServer() as server:
        with FolderLock(tmp_path / "runs" / TASK / "ape", "optimize run"):
            assert optimize(small(tmp_path, server, dry_run=True), out=lambda line: None) is None
        with pytest.raises(AboError, match="no task given"):
            optimize(small(tmp_path / "other", server, task=""), out=lambda line: None)
        with pytest.raises(AboError, match="abo_n_train must be at least 1"):
            optimize(small(tmp_path / "bad", server, metadata={"abo_n_train": 0}), out=lambda line: None)
    assert not (tmp_path / "bad").exists(), "a run that wrote nothing leaves no folder behind"
