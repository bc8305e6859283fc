"""Crashes in the middle of a round, then `--resume`: the real gemma-3-270m server (llama.cpp on
127.0.0.1) killed while a round runs, and the optimize process itself SIGKILLed while it waits for the
optimizer. No completed round is lost, no file is half-written, and the resumed run finishes.
(test_real_path.py covers a run stopped between rounds.)"""

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import comparable, run_cli
from fakeserver import FakeServer, optimize_command, target_args, target_or_optimizer
from reliability import Section, code, normalise

from lm_eval_abo.artifact import store
from lm_eval_abo.embedded import serve
from lm_eval_abo.infra.files import read_json, read_yaml

pytestmark = pytest.mark.slow
TASK = "abo_object_counting_synth"
SECTION = Section("crash-resume", "Crashes and --resume (tests/test_crash_resume.py)", [
    "target server dies mid-round", "SIGKILL mid-round"])


table = SECTION.fixture()


def assert_intact(run_dir: Path, completed_round: int) -> None:
    """Every file of the run parses, holds the last completed round, and no temporary file is left."""
    assert read_json(run_dir / "state.json")["state"]["round"] == completed_round
    assert [r["round"] for r in store.load(run_dir / "best.yaml", task=TASK).trace] == list(range(completed_round + 1))
    assert (run_dir / "report.md").read_text().count("## Round") == completed_round + 1
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")], "no half-written file is left"


def gemma_args(port: int) -> str:
    return (f"model=gemma-3-270m,base_url=http://127.0.0.1:{port}/v1/completions,tokenizer_backend=None,"
            "tokenized_requests=False,num_concurrent=1,max_retries=1")


def test_target_server_dying_mid_round_is_one_line_and_resume_finishes(tmp_path):
    gemma = serve.start("gemma-3-270m")
    port = gemma.port
    with FakeServer() as optimizer:
        def kill_target_at_round_1(request):  # round 1 asks for a paraphrase; its dev scoring comes next
            if "Write a variation" in request.text and gemma.process.poll() is None:
                gemma.process.kill()
                gemma.process.wait()

        optimizer.on_request = kill_target_at_round_1
        try:
            proc = run_cli(*optimize_command(optimizer, gemma_args(port), "runs", 1), cwd=tmp_path, check=False)
        finally:
            serve.stop(gemma)
        run_dir = tmp_path / "runs" / TASK / "ape"
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert lines[-1].startswith("lm-eval-abo: error: the target model failed: ConnectionError: [Errno 111] "
                                    "Connection refused (http://127.0.0.1:"), proc.stderr[-3000:]
        assert lines[-1].endswith(f"round 0 is saved in runs/{TASK}/ape; rerun with --resume to continue from there")
        assert_intact(run_dir, 0)

        with serve.running(["gemma-3-270m"], [port]):  # the same server again
            resumed = run_cli(*optimize_command(optimizer, gemma_args(port), "runs", 1, "--resume"), cwd=tmp_path)
    assert "resuming" in resumed.stdout + resumed.stderr
    artifact = store.load(run_dir / "best.yaml", task=TASK)
    assert [r["round"] for r in artifact.trace] == [0, 1] and artifact.scores["test"]["n"] == 2
    message = normalise(lines[-1], tmp_path)
    SECTION.record("target server dies mid-round",
                   "`optimize` against gemma-3-270m served by llama.cpp (`local-completions`, `max_retries=1`); the "
                   "server is SIGKILLed when round 1 asks the optimizer for a candidate, then restarted on its port",
                   f"exit 2 and one line: {code(message)}; state, artifact and report hold round 0, intact; "
                   "`--resume` finishes round 1 and the test evaluation")


def test_sigkill_while_the_optimizer_answers_then_resume_gives_the_uninterrupted_artifact(tmp_path):
    with FakeServer(target_or_optimizer) as server:
        target = target_args(server)
        run_cli(*optimize_command(server, target, "whole", 2), cwd=tmp_path)
        whole = store.load(tmp_path / "whole" / TASK / "ape" / "best.yaml")

        process = subprocess.Popen(optimize_command(server, target, "killed", 2), cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        paraphrases = []

        def kill_in_round_2(request):  # the second paraphrase request is round 2's: round 1 is complete
            if "Write a variation" in request.text:
                paraphrases.append(request)
                if len(paraphrases) == 2:
                    os.kill(process.pid, signal.SIGKILL)

        server.on_request = kill_in_round_2
        assert process.wait(timeout=600) == -signal.SIGKILL, "the run ended before round 2 asked the optimizer"
        server.on_request = None
        run_dir = tmp_path / "killed" / TASK / "ape"
        assert_intact(run_dir, 1)
        assert not (run_dir / "results").exists()
        for path in run_dir.rglob("*"):
            if path.suffix == ".json":
                read_json(path)
            elif path.suffix == ".yaml":
                read_yaml(path)

        proc = run_cli(*optimize_command(server, target, "killed", 2, "--resume"), cwd=tmp_path)
    assert "resuming" in proc.stdout + proc.stderr
    resumed = store.load(run_dir / "best.yaml")
    assert comparable(resumed) == comparable(whole)
    SECTION.record("SIGKILL mid-round",
                   "`optimize --rounds 2` (target and optimizer over HTTP on 127.0.0.1) SIGKILLed while round 2 "
                   "waits for the optimizer, then `--resume`",
                   "state, artifact and report hold round 1, parse, and no temporary file is left; the resumed run's "
                   "artifact (prompt, scores, splits, trace) equals an uninterrupted run's")
