"""Features on the real path: the embedded models (target gemma-3-270m, optimizer Qwen2.5-Coder-0.5B) through
lm-eval's own machinery, at tiny sizes. The caps, racing and the paired acceptance rule, `--resume` for `abo`
and `gepa`, and an lm-eval built-in task found by its name and optimized offline. (The served model, the
stock `lm_eval` CLI and `check` are in test_real_path_cli.py.)

Runs go through `optimize()` in one process (the models load once) where a test needs no process of its own;
runs of the same settings share the optimizer's reply cache, so a second run costs the target's requests only."""

import json
import shutil
import subprocess

import pytest
from conftest import SHARED_BBH, bin_path, comparable, results_file
from scipy.stats import binomtest

from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Ledger, Usage
from lm_eval_abo.infra.files import read_json
from lm_eval_abo.optimizers.result import SearchState
from lm_eval_abo.run.optimize import optimize

pytestmark = pytest.mark.slow
TASK = "abo_object_counting_synth"
TINY = dict(beam=1, train_limit=4, dev_limit=3, test_limit=2, minibatch=2, gen_kwargs={"max_gen_toks": 32})


def run(folder, method, cache, task=TASK, **settings):
    """An optimize run in this process; its artifact, state.json and report.md read back from disk."""
    lines = []
    config = OptimizeConfig(task=task, method=method, output=str(folder), optimizer_cache=str(cache), **{**TINY, **settings})
    optimize(config, out=lines.append)
    run_dir = folder / task / method
    return (store.load(run_dir / "best.yaml", task=task), SearchState.from_dict(read_json(run_dir / "state.json")["state"]),
            (run_dir / "report.md").read_text(), lines)


def assert_saved(artifact, state, report, rounds: list[int]) -> None:
    """The rounds the run completed, the same in the artifact, the checkpoint and the report."""
    assert [r["round"] for r in artifact.trace] == rounds == [r.round for r in state.trace]
    assert state.round == rounds[-1] and report.count("## Round") == len(rounds)


# --- racing, the paired acceptance rule at --alpha, and the caps ---------------------------------------

ALPHA = 0.2
RACE = dict(method_args={"paraphrases": 2}, candidates=2, dev_limit=4, rounds=1, selection="racing", accept="paired",
            alpha=ALPHA, target_price=(1.0, 2.0))  # 2 candidates a round, the beam keeps 1: a race drops one


@pytest.fixture(scope="module")
def raced(tmp_path_factory):
    """An ape run with racing, the paired rule at ALPHA and a target price: round 0 and round 1, then test."""
    root = tmp_path_factory.mktemp("raced")
    artifact, state, report, lines = run(root / "runs", "ape", root / "optimizer-cache", **RACE)
    return {"root": root, "artifact": artifact, "state": state, "report": report}


def test_racing_drops_no_candidate_its_stated_level_cannot_reject(raced):
    state, artifact = raced["state"], raced["artifact"]
    assert artifact.settings["selection"] == "racing" and artifact.settings["race_alpha"] == 0.05
    raced_rounds = 0
    for record in state.trace:
        new = [n for n in state.nodes if n.round == record.round and n.candidate.origin != "baseline"]
        if len(new) < 2:
            continue
        raced_rounds += 1
        # 4 dev examples: a first slice of 3, then all 4. On 3 examples the one-sided sign test's smallest
        # p-value is 1/2**3 = 0.125, above any level the race uses (0.05 / (K - 1)), so no candidate may be
        # dropped: every one is scored on all of dev and none carries a raced-out note
        assert all(n.dev_n == 4 and "raced_out" not in n.candidate.notes for n in new)
    assert raced_rounds, "a round had two candidates to race"


def test_the_paired_rule_at_alpha_decides_every_new_best(raced):
    state, artifact = raced["state"], raced["artifact"]
    assert artifact.settings["accept"] == "paired" and artifact.settings["alpha"] == ALPHA
    incumbent = next(n for n in state.nodes if n.candidate.origin == "baseline")
    for record in state.trace:
        new = [n for n in state.nodes if n.round == record.round and n.dev_n == 4 and n is not incumbent]
        leader = max([incumbent, *new], key=lambda n: n.dev)  # the first of the highest: the incumbent on a tie
        expected = incumbent
        if leader is not incumbent:
            pairs = [(incumbent.dev_per_example[i], leader.dev_per_example[i]) for i in incumbent.dev_per_example]
            wins, losses = sum(b > a for a, b in pairs), sum(b < a for a, b in pairs)
            p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
            if p <= ALPHA:
                expected = leader
                assert record.best.gain_p == pytest.approx(p, abs=1e-6) and record.best.within_noise is False
        assert expected.key.startswith(record.best.key), f"round {record.round}: the paired rule's choice is the best"
        incumbent = expected
    assert state.beam == [incumbent.key] and artifact.prompt.to_dict() == incumbent.candidate.prompt.to_dict()


@pytest.mark.parametrize("cap", ["max_target_tokens", "max_cost"])
def test_a_cap_stops_the_run_at_the_cap_with_its_rounds_saved(raced, cap):
    """The capped run (same settings, same optimizer cache) is allowed round 0 and the test evaluation kept
    aside, by the budget's rule (README: what was spent, the next pass at the mean size of those before it, and
    the projected test evaluation must fit): its round 1 does not fit, so it stops after round 0 and still
    evaluates its best prompt on test, within the cap."""
    whole = raced["artifact"]
    assert [r["round"] for r in whole.trace] == [0, 1], "uncapped, the run makes round 1"
    round_0 = Ledger.from_dict(whole.trace[0])
    reserve = Usage.from_dict(whole.usage["projection"]["test"]["target"])
    if cap == "max_cost":  # the target at $1 in / $2 out per million tokens, the optimizer at $0 (embedded)
        assert round_0.target.cost_usd == pytest.approx(
            (round_0.target.prompt_tokens * 1.0 + round_0.target.completion_tokens * 2.0) / 1e6, rel=1e-9)
        limit = round_0.target.cost_usd + reserve.cost_usd + 1e-9
    else:
        limit = round_0.target.tokens + reserve.tokens + 1
    root = raced["root"]
    artifact, state, report, lines = run(root / cap, "ape", root / "optimizer-cache", **RACE, **{cap: limit})
    flag = "--" + cap.replace("_", "-")
    assert artifact.usage["stopped"].startswith(flag) and state.stopped.startswith(flag)
    assert_saved(artifact, state, report, [0])
    assert any(f"caps: {flag}" in line for line in lines), "the projection said so before the run started"
    spent = Ledger.from_dict(artifact.usage)  # the whole run, the test evaluation included
    assert (spent.cost_usd if cap == "max_cost" else spent.target.tokens) <= limit
    assert artifact.usage["test"]["calls"] > 0 and artifact.scores["test"]["n"] == 2, "the best prompt was still tested"


# --- --resume for abo and gepa: a run stopped by a cap resumes to the uninterrupted run's artifact -----------

RESUMED = {  # abo: stopped in round 1 (its revisions undone); gepa: in round 2, so GEPA's own saved run continues
    "abo": dict(rounds=1, patience=0, method_args={"demos": 2, "demo_attempts": 2, "max_errors": 1, "revisions": 1}),
    "gepa": dict(rounds=2, method_args={"proposals": 1, "reflection_minibatch": 2}),
}


def drop_method_requests(artifact: dict) -> dict:
    return {**artifact, "trace": [{k: v for k, v in r.items() if k != "method_requests"} for r in artifact["trace"]]}


@pytest.mark.parametrize("method", ["abo", "gepa"])
def test_a_run_stopped_in_its_last_round_resumes_to_the_uninterrupted_artifact(tmp_path, method):
    """Both runs share the optimizer's cache and lm-eval's target cache (`--use_cache`), as the README says
    a resumed run must for its artifact to equal an uninterrupted run's."""
    cache, settings = tmp_path / "optimizer-cache", dict(RESUMED[method], use_cache=str(tmp_path / "target"))
    last = settings["rounds"]
    whole, _, whole_report, _ = run(tmp_path / "whole", method, cache, **settings)
    assert [r["round"] for r in whole.trace] == list(range(last + 1))
    if method == "gepa":  # GEPA's own run: the pinned package, its budget in metric calls, its saved state
        notes = whole.trace[1]["notes"]
        assert whole.versions["gepa"] == "0.1.4" and notes["metric_calls"].endswith(f"of {3 + 1 * (2 * 2 + 3)}")
        assert (tmp_path / "whole" / TASK / "gepa" / "gepa" / "gepa_state.bin").exists() and "proposals: " in whole_report
        assert whole.usage["optimizer"]["calls"] >= 1 + notes["proposals"], "the reflections went through the ledger"
    # a cap on optimizer calls at what the rounds before the last used: the last round's first call is refused
    calls = sum(r["optimizer"]["calls"] for r in whole.trace[:last])
    assert whole.trace[last]["optimizer"]["calls"] > 0, "the last round asks the optimizer"
    stopped, state, report, _ = run(tmp_path / "runs", method, cache, **settings, max_optimizer_calls=calls)
    assert state.stopped == f"--max-optimizer-calls {calls} reached"
    assert_saved(stopped, state, report, list(range(last)))
    assert state.ledger.optimizer.calls == calls, "the cap's count, kept in state.json"
    if method == "gepa":
        assert state.method_state, "GEPA's own state is saved with the round"

    resumed, resumed_state, report, _ = run(tmp_path / "runs", method, cache, **settings, resume=True)
    assert_saved(resumed, resumed_state, report, list(range(last + 1)))
    # the trace but for its usage (the method's own target requests: a resumed GEPA re-sends what the stopped
    # process had memoised, to lm-eval's cache)
    assert drop_method_requests(comparable(resumed)) == drop_method_requests(comparable(whole))
    assert resumed.scores["test"]["value"] == whole.scores["test"]["value"]
    assert resumed.usage["optimizer"]["calls"] == whole.usage["optimizer"]["calls"], "the ledger carried over"


# --- an lm-eval built-in task by its name, its dataset from a local datasets cache, no network --------------


def bbh_datasets_cache(cache, task: str) -> None:
    """Hugging Face `datasets`' cache of `SaylorTwift/bbh` (the dataset lm-eval's bbh tasks name), config
    `task`, written from the local BIG-Bench-Hard file: what `load_dataset` reads when offline."""
    import datasets

    rows = json.loads((SHARED_BBH / f"{task}.json").read_text())["examples"]

    class Bbh(datasets.GeneratorBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo(features=datasets.Features({"input": datasets.Value("string"),
                                                                    "target": datasets.Value("string")}))

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name="test")]

        def _generate_examples(self):
            for i, row in enumerate(rows):
                yield i, {"input": row["input"], "target": row["target"]}

    Bbh(cache_dir=str(cache), repo_id="SaylorTwift/bbh", dataset_name="bbh", config_name=task, hash="local").download_and_prepare()


def offline(command: list[str]) -> list[str]:
    """`command` in a network namespace with loopback only, where this machine allows one."""
    if shutil.which("unshare") and shutil.which("ip") and subprocess.run(["unshare", "-n", "true"]).returncode == 0:
        return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    return command


def test_an_lm_eval_builtin_task_is_found_by_its_name_and_optimized_offline(tmp_path, bbh_dir, monkeypatch):
    name = "bbh_zeroshot_object_counting"
    bbh_datasets_cache(tmp_path / "hf-datasets", "object_counting")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    command = [bin_path("lm-eval-abo"), "optimize", "--task", name, "--method", "ape", "--rounds", "1", "--beam", "1",
               "--train-limit", "3", "--dev-limit", "2", "--test-limit", "2", "--minibatch", "2",
               "--method-args", "paraphrases=1", "--gen_kwargs", "max_gen_toks=16", "--output", "runs",
               "--optimizer-cache", str(tmp_path / "optimizer-cache")]
    proc = subprocess.run(offline(command), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / name / "ape"
    artifact = store.load(run_dir / "best.yaml", task=name)
    assert artifact.task == name and [r["round"] for r in artifact.trace] == [0, 1]
    # the bbh file has a test split only: train and dev carved out of it, disjoint from the test documents
    assert set(artifact.carved) >= {"train", "dev"}
    ids = {split: set(artifact.splits[split]) for split in ("train", "dev", "test")}
    assert [len(ids[s]) for s in ("train", "dev", "test")] == [3, 2, 2]
    assert not (ids["train"] | ids["dev"]) & ids["test"] and not ids["train"] & ids["dev"]
    # lm-eval scored it under its own name, with its own metric and filter, on the local copy's documents
    results = results_file(run_dir / "results" / "best")
    assert artifact.scores["test"]["value"] == results["results"][name][artifact.settings["metric"]]
    questions = {row["input"] for row in json.loads((bbh_dir / "object_counting.json").read_text())["examples"]}
    logged = [json.loads(line) for path in (run_dir / "results" / "best").rglob("samples_*.jsonl")
              for line in path.read_text().splitlines() if line.strip()]
    # one row per (document, filter): the built-in task has two filters
    assert len({row["doc_id"] for row in logged}) == 2 and all(row["doc"]["input"] in questions for row in logged)
