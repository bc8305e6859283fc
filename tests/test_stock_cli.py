"""The stock `lm_eval` CLI on the abo_* tasks, against the real embedded target served on 127.0.0.1."""

import json

import pytest
from conftest import bin_path, local_completions_args, results_file, run_cli, samples

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.tasks import tasks_dir

pytestmark = pytest.mark.slow
TASK = "abo_object_counting_synth"


def lm_eval(server, tmp_path, *extra: str, check: bool = True):
    return run_cli(
        bin_path("lm_eval"), "--model", "local-completions", "--model_args", local_completions_args(server),
        "--include_path", str(tasks_dir()), "--output_path", str(tmp_path / "out"), "--log_samples", *extra,
        cwd=tmp_path, check=check,
    )


def test_artifact_through_the_stock_cli(gemma_server, tmp_path):
    demo = Demonstration(doc={"id": "d", "input": "I have a cat and a dog. How many animals do I have?", "target": "2"},
                         output="A cat (1) and a dog (1). So the answer is 2.")
    prompt = Prompt(instruction="Count the things of the asked kind. Say \"So the answer is N.\"", demonstrations=(demo,))
    path = store.save(store.Artifact(task=TASK, method="manual", prompt=prompt), tmp_path / "runs" / "best.yaml")
    lm_eval(gemma_server, tmp_path, "--tasks", TASK, "--limit", "3", "--metadata", json.dumps({"abo_prompt": "runs/best.yaml"}))

    results = results_file(tmp_path / "out")
    value = results["results"][TASK]["exact_match,answer"]
    assert results["n-samples"][TASK]["effective"] == 3
    abo = results["configs"][TASK]["metadata"]["abo"]
    assert abo["method"] == "manual" and abo["artifact_sha256"] == store.file_sha256(path)
    assert abo["prompt_sha256"] == prompt.sha256()
    rows = samples(tmp_path / "out", TASK)
    assert len(rows) == 3
    for row in rows:
        sent = row["arguments"]["gen_args_0"]["arg_0"]
        assert sent.startswith("Count the things of the asked kind.") and demo.output in sent
        assert row["filtered_resps"][0] == "[invalid]" or row["filtered_resps"][0].lstrip("-").isdigit()
    # the score counted by hand: the answers the task's filter read that equal the gold answer
    right = sum(row["filtered_resps"][0] == str(row["doc"]["target"]) for row in rows)
    assert value == pytest.approx(right / 3) and [r["exact_match"] for r in rows] == [
        float(row["filtered_resps"][0] == str(row["doc"]["target"])) for row in rows]


def test_glob_and_baseline_without_artifact(gemma_server, tmp_path):
    listed = run_cli(bin_path("lm-eval"), "ls", "tasks", "--include_path", str(tasks_dir()), cwd=tmp_path).stdout
    assert "abo_bbh_snarks" in listed and "abo_navigate_synth" in listed
    lm_eval(gemma_server, tmp_path, "--tasks", "abo_*_synth", "--limit", "2")
    results = results_file(tmp_path / "out")
    assert set(results["results"]) == {"abo_object_counting_synth", "abo_navigate_synth"}
    assert results["configs"]["abo_navigate_synth"]["metadata"]["abo"]["method"] == "baseline"


def test_bbh_local_copy_through_the_stock_cli(gemma_server, tmp_path, bbh_dir):
    lm_eval(gemma_server, tmp_path, "--tasks", "abo_bbh_navigate", "--limit", "2", "--metadata", json.dumps({"abo_data_dir": str(bbh_dir)}))
    assert "exact_match,answer" in results_file(tmp_path / "out")["results"]["abo_bbh_navigate"]


@pytest.mark.parametrize("case", ["missing", "wrong-task", "offline-dataset"])
def test_user_errors_are_one_line_with_no_traceback(gemma_server, tmp_path, case):
    if case == "offline-dataset":
        args, expected = ["--tasks", "abo_gsm8k"], "cannot load dataset openai/gsm8k"
    else:
        path = tmp_path / "a.yaml"
        if case == "wrong-task":
            store.save(store.Artifact(task="abo_navigate_synth", method="apo", prompt=Prompt()), path)
        args = ["--tasks", TASK, "--metadata", json.dumps({"abo_prompt": str(path)})]
        expected = "no such file" if case == "missing" else "is for task 'abo_navigate_synth'"
    proc = lm_eval(gemma_server, tmp_path, *args, "--limit", "1", check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lm-eval-abo: ") and expected in last
    assert "Traceback" not in proc.stderr


def test_plugin_run_command_uses_the_in_process_model(tmp_path):
    run_cli(
        bin_path("lm-eval-abo"), "run", "--model", "abo-embedded", "--tasks", "abo_navigate_synth", "--limit", "2",
        "--output_path", str(tmp_path / "out"), cwd=tmp_path,
    )
    results = results_file(tmp_path / "out")
    assert results["config"]["embedded_model"] == "gemma-3-270m"
    assert "exact_match,answer" in results["results"]["abo_navigate_synth"]
