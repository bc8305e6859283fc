"""Any lm-eval task in, a plain lm-eval task out.

Fast tests: a rule-based target and a scripted optimizer server, real lm-eval. Slow ones: the real
embedded models, and the stock `lm_eval` CLI (against the served target) on the exported task and on
the user's own task."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import (
    bin_path,
    local_completions_args,
    rule_lm,
    run_cli,
    samples,
    write_multiple_choice_task,
    write_user_task,
)
from fakeserver import FakeServer

from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_json
from lm_eval_abo.run.optimize import optimize
from lm_eval_abo.run.session import plan_session
from lm_eval_abo.tasks import lookup

LM_EVAL_TASKS = Path(__import__("lm_eval.tasks", fromlist=["x"]).__file__).parent
FAST = dict(optimizer="openai/fake", beam=1, train_limit=4, dev_limit=3, minibatch=2, method="ape",
            method_args={"paraphrases": 1}, optimizer_cache=None)


def fast_run(tmp_path, server, task, include_path, **overrides):
    config = OptimizeConfig(task=task, include_path=[str(include_path)], output=str(tmp_path / "runs"),
                            optimizer_args={"api_base": server.base_url, "api_key": "x"}, **{**FAST, **overrides})
    return optimize(config, out=lambda line: None, lm=rule_lm())


# --- finding the task ---------------------------------------------------------------------------


def test_a_group_or_a_tag_is_one_line_that_lists_its_tasks(tmp_path):
    folder = write_user_task(tmp_path / "tasks", tag="my_tag")
    (folder / "my_group.yaml").write_text(yaml.safe_dump({"group": "my_group", "task": ["my_arith", {"task": "other"}]}))
    with pytest.raises(AboError, match=r"'my_group' is a group of 2 tasks \(my_arith, other\); optimize one task at a time"):
        lookup.task_manager("my_group", [str(folder)], {})
    with pytest.raises(AboError, match=r"'my_tag' is a tag of 1 tasks \(my_arith\)"):
        lookup.task_manager("my_tag", [str(folder)], {})


def test_unknown_names_and_missing_paths_are_one_line(tmp_path):
    folder = write_user_task(tmp_path / "tasks")
    with pytest.raises(AboError, match="unknown task 'my_arit': .* or under --include_path; did you mean my_arith"):
        lookup.task_manager("my_arit", [str(folder)], {})
    with pytest.raises(AboError, match="--include_path .*nowhere: no such directory"):
        lookup.task_manager("my_arith", [str(tmp_path / "nowhere")], {})


def test_lm_evals_own_tasks_are_found_and_its_index_is_built_only_when_needed(tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    calls = []
    init = TaskManager.__init__

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("include_defaults", True))
        init(self, *args, **kwargs)

    monkeypatch.setattr(TaskManager, "__init__", counting)
    folder = write_user_task(tmp_path / "tasks")
    lookup.task_manager("my_arith", [str(folder)], {})
    assert calls == [False], "a user's task: lm-eval's own index is not built"
    manager = lookup.task_manager("bbh_cot_zeroshot_date_understanding", [], {})
    assert calls == [False, False, True] and "bbh_cot_zeroshot_date_understanding" in manager.task_index


def test_a_python_class_task_is_refused_before_its_data_is_fetched():
    with pytest.raises(AboError, match="'squadv2' is a Python class"):
        plan_session(OptimizeConfig(task="squadv2").resolved())  # the sizes of the preset, no method needed


def test_abo_on_a_multiple_choice_task_is_one_line(tmp_path):
    folder = write_multiple_choice_task(tmp_path / "tasks")
    config = OptimizeConfig(task="my_choice", include_path=[str(folder)], method="abo", dry_run=True, output=str(tmp_path))
    with pytest.raises(AboError, match="abo needs the target's generated text, and task 'my_choice' is a multiple_choice task"):
        optimize(config, out=lambda line: None)


# --- a run on a user's task, carved splits, the export -------------------------------------------


def test_a_test_only_task_gets_carved_splits_that_a_run_records_and_its_export_reproduces(tmp_path):
    folder = write_user_task(tmp_path / "tasks", splits=("test",), sizes=(40,))
    with FakeServer() as server:
        outcome = fast_run(tmp_path, server, "my_arith", folder, rounds=1, test_limit=100)
    artifact = outcome.artifact_data
    train, dev, test = (artifact.splits[s] for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (4, 3, 33) and artifact.carved == {"train": "test", "dev": "test"}
    assert not (set(train) & set(dev) or set(train) & set(test) or set(dev) & set(test)), "disjoint"
    assert all(i.startswith("test:") for i in train + dev + test)
    assert artifact.scores["test"]["n"] == artifact.scores["baseline_test"]["n"] == 33
    assert artifact.export == {"task": "my_arith_abo", "yaml": "my_arith_abo.yaml", "checked_documents": 33}

    exported = outcome.run_dir / "my_arith_abo.yaml"
    text = exported.read_text()
    assert "lm_eval_abo" not in text.replace("lm-eval-abo", ""), "the export names nothing of the plugin"
    config = yaml.safe_load(text.replace("!function", ""))
    assert config["task"] == "my_arith_abo" and config["test_split"] == "test"
    docs = [json.loads(line) for line in (outcome.run_dir / "my_arith_abo" / "test.jsonl").read_text().splitlines()]
    assert len(docs) == 33 and all(set(d) == {"question", "answer"} for d in docs)
    state = read_json(outcome.run_dir / "state.json")
    assert state["splits"] == artifact.splits
    baseline = state["state"]["nodes"][0]
    assert baseline["origin"] == "baseline" and not any(baseline["prompt"][k] for k in ("instruction", "procedure")), \
        "the task exactly as written is scored as the baseline"


def test_apo_rewrites_the_description_of_a_task_as_written(tmp_path):
    from conftest import ScriptedLLM, make_bridge, make_context

    from lm_eval_abo.optimizers import METHODS
    from lm_eval_abo.optimizers.base import Candidate, Node, Round

    folder = write_user_task(tmp_path / "tasks")
    llm = ScriptedLLM(lambda messages: "<prompt>Add both numbers carefully.</prompt>")
    bridge = make_bridge(rule_lm(), "my_arith", include_path=[str(folder)])
    ctx = make_context(bridge, llm, "ape", paraphrases=1)
    baseline = Node(Candidate(bridge.default_prompt, "baseline"), 0, 0.0, None, 3, {})
    [child] = METHODS["ape"].propose(ctx, Round(1, [baseline], [baseline])).candidates
    assert "Instruction: Add the two numbers." in llm.prompts_sent()[0]
    assert child.prompt.instruction == "Add both numbers carefully."
    assert child.prompt.answer_format == 'End your answer with "So the answer is <answer>.".', \
        "found by trying phrasings on the task's own regex filter"


def test_resume_keeps_the_carved_splits_and_refuses_changed_ones(tmp_path):
    folder = write_user_task(tmp_path / "tasks", splits=("test",), sizes=(40,))
    with FakeServer() as server:
        first = fast_run(tmp_path, server, "my_arith", folder, rounds=1)
        again = fast_run(tmp_path, server, "my_arith", folder, rounds=2, resume=True)
        assert again.artifact_data.splits == first.artifact_data.splits
        state = read_json(first.run_dir / "state.json")
        state["splits"]["dev"][0] = "test:999"
        (first.run_dir / "state.json").write_text(json.dumps(state))
        with pytest.raises(AboError, match="differ from those the run in .* used"):
            fast_run(tmp_path, server, "my_arith", folder, rounds=3, resume=True)


def test_export_lm_eval_writes_the_same_task_from_the_artifact(tmp_path):
    folder = write_user_task(tmp_path / "tasks", splits=("test",), sizes=(30,))
    with FakeServer() as server:
        outcome = fast_run(tmp_path, server, "my_arith", folder, rounds=0, test_limit=10)
    written = (outcome.run_dir / "my_arith_abo.yaml").read_text()
    proc = run_cli(bin_path("lm-eval-abo"), "export", "lm-eval", str(outcome.artifact), "-o", str(tmp_path / "again"),
                   cwd=tmp_path)
    assert "10 test documents" in proc.stdout
    assert (tmp_path / "again" / "my_arith_abo.yaml").read_text() == written
    assert (tmp_path / "again" / "my_arith_abo" / "test.jsonl").read_bytes() == \
        (outcome.run_dir / "my_arith_abo" / "test.jsonl").read_bytes()


# --- the real embedded models and the stock lm_eval CLI ------------------------------------------


def bbh_task(folder: Path, bbh_dir: Path) -> Path:
    """A user's YAML that includes lm-eval's own BBH zero-shot chain-of-thought task and reads the real
    BIG-Bench-Hard file from disk (the built-in one reads it from the Hugging Face Hub)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_counting.yaml").write_text(yaml.safe_dump({
        "task": "my_counting", "include": str(LM_EVAL_TASKS / "bbh" / "cot_zeroshot" / "object_counting.yaml"),
        "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(bbh_dir / "object_counting.json")}, "field": "examples"},
    }))
    return folder


@pytest.mark.slow
def test_the_stock_lm_eval_reproduces_the_runs_test_score_from_the_exported_task(gemma_server, tmp_path, bbh_dir):
    folder = bbh_task(tmp_path / "tasks", bbh_dir)
    run_cli(bin_path("lm-eval-abo"), "optimize", "--task", "my_counting", "--include_path", str(folder), "--method", "abo",
            "--rounds", "1", "--beam", "1", "--train-limit", "4", "--dev-limit", "3", "--test-limit", "6",
            "--minibatch", "2", "--gen_kwargs", "max_gen_toks=64", "--method-args", "demo_attempts=2,max_errors=1,revisions=1",
            "--optimizer-cache", str(tmp_path / "optimizer-cache"), "--output", "runs", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "my_counting" / "abo"
    artifact = store.load(run_dir / "best.yaml")
    assert artifact.carved == {"train": "test", "dev": "test"} and artifact.export["checked_documents"] == 6

    # where only lm-eval is installed: the stock CLI, the served model, the run directory as include path
    run_cli(bin_path("lm_eval"), "--model", "local-completions", "--model_args", local_completions_args(gemma_server),
            "--include_path", str(run_dir), "--tasks", "my_counting_abo", "--output_path", str(tmp_path / "stock"),
            "--log_samples", cwd=tmp_path)
    results = json.loads(sorted((tmp_path / "stock").rglob("results_*.json"))[-1].read_text())
    assert results["results"]["my_counting_abo"][artifact.scores["test"]["metric"]] == artifact.scores["test"]["value"]
    stock = samples(tmp_path / "stock", "my_counting_abo")
    run = samples(run_dir / "results" / "best", "my_counting")
    assert [r["arguments"] for r in stock] == [r["arguments"] for r in run], "the same prompts, document for document"


@pytest.mark.slow
def test_the_baseline_is_the_users_task_exactly_as_the_stock_lm_eval_runs_it(gemma_server, tmp_path):
    folder = write_user_task(tmp_path / "tasks", splits=("test",), sizes=(30,))
    run_cli(bin_path("lm-eval-abo"), "optimize", "--task", "my_arith", "--include_path", str(folder), "--method", "ape",
            "--rounds", "0", "--beam", "1", "--train-limit", "4", "--dev-limit", "3", "--test-limit", "8",
            "--optimizer-cache", str(tmp_path / "optimizer-cache"), "--output", "runs", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "my_arith" / "ape"
    artifact = store.load(run_dir / "best.yaml")
    held_out = [int(i.split(":")[1]) for i in artifact.splits["test"]]
    run_cli(bin_path("lm_eval"), "--model", "local-completions", "--model_args", local_completions_args(gemma_server),
            "--include_path", str(folder), "--tasks", "my_arith", "--samples", json.dumps({"my_arith": held_out}),
            "--output_path", str(tmp_path / "stock"), "--log_samples", cwd=tmp_path)
    stock = samples(tmp_path / "stock", "my_arith")
    baseline_dir = run_dir / artifact.scores["baseline_test"]["results_file"]
    run = [json.loads(line) for line in sorted(baseline_dir.parent.glob("samples_my_arith_*.jsonl"))[-1].read_text().splitlines()]
    assert [r["arguments"] for r in stock] == [r["arguments"] for r in run], "byte-identical prompts"
    assert [r["resps"] for r in stock] == [r["resps"] for r in run]
    results = json.loads(sorted((tmp_path / "stock").rglob("results_*.json"))[-1].read_text())
    assert results["results"]["my_arith"]["exact_match,get-answer"] == artifact.scores["baseline_test"]["value"]


@pytest.mark.slow
def test_apo_optimizes_a_multiple_choice_task_on_the_real_models(tmp_path):
    folder = write_multiple_choice_task(tmp_path / "tasks")
    run_cli(bin_path("lm-eval-abo"), "optimize", "--task", "my_choice", "--include_path", str(folder), "--method", "apo",
            "--rounds", "1", "--beam", "1", "--train-limit", "4", "--dev-limit", "3", "--test-limit", "5", "--minibatch", "4",
            "--method-args", "gradients=1,paraphrases=0", "--optimizer-cache", str(tmp_path / "optimizer-cache"),
            "--output", "runs", cwd=tmp_path)
    artifact = store.load(tmp_path / "runs" / "my_choice" / "apo" / "best.yaml")
    assert artifact.scores["test"]["metric"] == "acc,none" and artifact.scores["test"]["n"] == 5
    assert [r["round"] for r in artifact.trace] == [0, 1]
    report = (tmp_path / "runs" / "my_choice" / "apo" / "report.md").read_text()
    assert "## Round 1" in report
