"""`optimize` end to end on the real embedded models (target gemma-3-270m, optimizer Qwen2.5-0.5B; ABO on the README
main command's pair), scored by real lm-eval, with a tiny budget. (A kill between rounds and `--resume`:
test_real_path.py and test_crash_resume.py.)"""

import json

import pytest
from conftest import bin_path, logged_values, paired_by_hand, results_file, run_cli

from lm_eval_abo.artifact import store
from lm_eval_abo.infra.files import read_json
from lm_eval_abo.reports import results

pytestmark = pytest.mark.slow
TASK = "abo_object_counting_synth"
README_PAIR = ["--model_args", "model=qwen2.5-coder-0.5b", "--optimizer", "embedded/qwen2.5-coder-1.5b"]
TINY = ["--beam", "1", "--train-limit", "4", "--dev-limit", "3", "--test-limit", "3", "--minibatch", "2",
        "--gen_kwargs", "max_gen_toks=48"]


def optimize(tmp_path, method, *extra, rounds="1", output="runs", cache="optimizer-cache", check=True):
    return run_cli(
        bin_path("lm-eval-abo"), "optimize", "--task", TASK, "--method", method, "--rounds", rounds, *TINY,
        "--output", output, "--optimizer-cache", str(tmp_path / cache), *extra, cwd=tmp_path, check=check,
    )


def test_apo_end_to_end_then_the_stock_harness_runs_the_artifact(tmp_path):
    method = "apo"
    proc = optimize(tmp_path, method, "--method-args", "gradients=1,paraphrases=0")
    assert "projected before any call" in proc.stdout + proc.stderr and "| round |" in proc.stdout + proc.stderr
    run_dir = tmp_path / "runs" / TASK / method
    artifact = store.load(run_dir / "best.yaml", task=TASK)
    assert [r["round"] for r in artifact.trace] == [0, 1]
    assert artifact.trace[0]["candidates"][0]["origin"] == "baseline"
    assert artifact.usage["optimizer"]["calls"] >= 2 and artifact.usage["optimizer"]["prompt_tokens"] > 0
    assert artifact.usage["optimizer"]["cost_known"] and artifact.usage["optimizer"]["cost_usd"] == 0.0
    assert len(artifact.splits["train"]) == 4 and len(artifact.splits["dev"]) == 3 and len(artifact.splits["test"]) == 3
    assert set(artifact.templates) >= {"apo_gradient", "apo_edit", "_errors"}  # paraphrases=0 and all(len(h) == 64 for h in artifact.templates.values())

    results = results_file(run_dir / "results" / "best")
    assert artifact.scores["test"]["value"] == results["results"][TASK]["exact_match,answer"]
    assert results["configs"][TASK]["metadata"]["abo"]["prompt_sha256"] == artifact.prompt.sha256()
    assert (run_dir / "report.md").read_text().count("## Round") == 2

    # the artifact through lm-eval's own run command, on the same test examples
    run_cli(bin_path("lm-eval-abo"), "run", "--model", "abo-embedded", "--tasks", TASK, "--limit", "3",
            "--gen_kwargs", "max_gen_toks=48", "--metadata", json.dumps({"abo_prompt": str(run_dir / "best.yaml")}),
            "--output_path", str(tmp_path / "rerun"), cwd=tmp_path)
    assert results_file(tmp_path / "rerun")["results"][TASK]["exact_match,answer"] == artifact.scores["test"]["value"]


def test_abo_end_to_end_on_the_readme_pair(tmp_path):
    """The README main command's models: target qwen2.5-coder-0.5b (completion), optimizer qwen2.5-coder-1.5b;
    round 0 only (a procedure and its verified demonstrations; revisions on the real models: test_real_path.py)."""
    proc = optimize(tmp_path, "abo", "--method-args", "demo_attempts=2", *README_PAIR, rounds="0")
    assert "verdict: " in proc.stdout + proc.stderr
    run_dir = tmp_path / "runs" / TASK / "abo"
    artifact = store.load(run_dir / "best.yaml", task=TASK)
    state = read_json(run_dir / "state.json")["state"]
    procedures = [n for n in state["nodes"] if n["origin"] in ("procedure", "revision")]
    # whether a 0.5B optimizer's procedure survives verification is the model's to decide; that ABO asked for
    # procedures and either scored each one or recorded why it was left out is the pipeline's
    dropped = [d for r in artifact.trace for d in r.get("dropped", []) if d["origin"] in ("procedure", "revision")]
    assert procedures or dropped, "ABO wrote a behaviour prompt or recorded why none was scored"
    assert all(d["reason"] for d in dropped)
    assert artifact.usage["optimizer"]["calls"] >= 1
    for node in procedures:
        assert len(node["prompt"]["procedure"]) >= 2 and node["prompt"]["answer_prefix"] == "Step 1:"
        counts = node["notes"]["demos_verified"]
        assert 1 <= counts["kept"] == len(node["prompt"]["demonstrations"]) <= counts["tried"]
    # the baseline and the best prompt on the same test examples, each through lm-eval, and their comparison,
    # checked against lm-eval's own per-example log
    logged = {side: logged_values(run_dir / artifact.scores[side]["results_file"], TASK) for side in ("test", "baseline_test")}
    for side, values in logged.items():
        assert artifact.scores[side]["n"] == len(values) == 3
        assert artifact.scores[side]["value"] == pytest.approx(sum(values.values()) / 3), "the mean of lm-eval's samples"
    comparison = artifact.scores["test_comparison"]
    difference, interval = paired_by_hand(logged["baseline_test"], logged["test"])
    assert comparison["n"] == 3 and comparison["difference"] == pytest.approx(difference)
    assert comparison["interval"] == pytest.approx(list(interval))
    base, best = logged["baseline_test"], logged["test"]
    assert len(comparison["fixed"]) == sum(base[d] == 0 and best[d] == 1 for d in best)
    assert len(comparison["broken"]) == sum(base[d] == 1 and best[d] == 0 for d in best)
    report = (run_dir / "report.md").read_text()
    assert comparison["verdict"] in report and "## Test" in report

    # how many different answers the task's filter read from the best prompt's test outputs, as lm-eval logged them
    [tested] = results.read(run_dir / artifact.scores["test"]["results_file"])
    rows = [json.loads(line) for line in tested.samples_file.read_text().splitlines() if line.strip()]
    given = {str(row["filtered_resps"][0]) for row in rows if row["filter"] == "answer"}
    assert artifact.scores["test"]["distinct_answers"] == len(given)
    assert ("one_answer" in artifact.scores["test"]) == (len(given) == 1) == ("gave one answer" in report)


def test_dry_run_projects_calls_without_loading_models(tmp_path):
    proc = optimize(tmp_path, "apo", "--dry-run")
    text = proc.stdout + proc.stderr
    assert "| total |" in text and not (tmp_path / "runs").exists()


def test_malformed_optimizer_replies_are_survived(tmp_path):
    """The real optimizer cut to two tokens cannot write the tagged block: every reply is malformed, gets
    its one format retry, is dropped with a warning, and the run still ends with the baseline prompt."""
    proc = optimize(tmp_path, "ape", "--method-args", "paraphrases=1", "--optimizer_args", "max_tokens=2")
    assert "dropped a reply without <prompt>" in proc.stderr
    artifact = store.load(tmp_path / "runs" / TASK / "ape" / "best.yaml", task=TASK)
    assert artifact.trace[0]["candidates"] == [artifact.trace[0]["candidates"][0]] and artifact.trace[1]["candidates"] == []
    assert artifact.prompt.instruction.startswith("Questions that involve enumerating objects"), "the baseline stands"
    assert artifact.usage["optimizer"]["calls"] == 4, "round 0 and round 1: one request each, each asked twice"
    assert artifact.scores["test"]["n"] == 3
