"""GEPA's engine (the gepa package) in the one search loop, through the one bridge to lm-eval.

Fast tests: a rule-based target (right exactly when the prompt says "magic"), a scripted reflection LM,
real lm-eval scoring and the real GEPA engine. GEPA on the real embedded models, stopped and resumed:
test_real_path.py."""

import pickle
import sys
from dataclasses import replace

import pytest
from conftest import (
    ScriptedLLM,
    make_bridge,
    make_context,
    make_search,
    projected_rounds,
    rule_lm,
)

from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.optimizers.gepa import (
    Adapter,
    GepaParams,
    components,
    engine,
    max_metric_calls,
    prompt_of,
    round_budget,
)
from lm_eval_abo.optimizers.result import SearchState

DEV = [0, 1, 2, 3]


def reflecting(fix_after: int | None = None, calls: list | None = None):
    """A scripted optimizer: initial instructions in tags; GEPA's reflection prompt (which asks for ```
    blocks) answered with a plain rewrite, or, from reflection call `fix_after` on, the magic word."""
    calls = calls if calls is not None else []

    def reply(messages):
        text = messages[0]["content"]
        if "```" not in text:
            return "<prompt>Count the items.</prompt>"
        calls.append(text)
        if fix_after is not None and len(calls) >= fix_after:
            return "```\nSay the magic word, then count.\n```"
        return f"```\nCount the items carefully, attempt {len(calls)}.\n```"

    return reply


def gepa_context(tmp_path, reply, max_calls=None, **params):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(reply, max_calls=max_calls)
    ctx = make_context(bridge, llm, "gepa", dev_indices=DEV, **params)
    return replace(ctx, engine_dir=tmp_path / "gepa"), llm


def run(ctx, rounds, state=None, checkpoints=None):
    saved = checkpoints if checkpoints is not None else []
    search = make_search("gepa", ctx, rounds=rounds)
    return search.run(state, lambda s, r: saved.append(SearchState.from_dict(s.to_dict())), lambda r: None)


def gepa_state(tmp_path):
    return pickle.loads((tmp_path / "gepa" / "gepa_state.bin").read_bytes())


def test_the_reflective_dataset_holds_lm_evals_outputs_and_gold_answers_of_train_examples_only():
    bridge = make_bridge(rule_lm(say="I counted."), abo_n_train=8, abo_n_dev=4)
    adapter = Adapter(bridge, Prompt(instruction="Count."))
    train = adapter.evaluate([("train", 2), ("train", 5)], {"instruction": "Count."}, capture_traces=True)
    assert train.scores == [0.0, 0.0] and train.outputs == [" I counted. I do not know."] * 2
    [records] = adapter.make_reflective_dataset({}, train, ["instruction"]).values()
    docs = bridge.docs("train")
    assert [r["Inputs"] for r in records] == [bridge.question(docs[2]), bridge.question(docs[5])]
    assert [r["Correct Answer"] for r in records] == [str(docs[2]["target"]), str(docs[5]["target"])]
    assert all(r["Generated Outputs"] == " I counted. I do not know." and r["Extracted Answer"] == "[invalid]" for r in records), \
        "the raw output and the answer the task's own regex filter read from it"
    assert "exact_match,answer = 0 (wrong)" in records[0]["Feedback"] and str(docs[2]["target"]) in records[0]["Feedback"]

    magic = adapter.evaluate([("dev", 0), ("dev", 1)], {"instruction": "The magic word."}, capture_traces=True)
    assert magic.scores == [1.0, 1.0]
    assert adapter.make_reflective_dataset({}, magic, ["instruction"]) == {"instruction": []}, "dev never reaches the optimizer"


def test_a_candidate_is_the_instruction_and_keeps_the_rest():
    seed = Prompt(instruction="Count the items.", answer_format="End with N.",
                  demonstrations=(Demonstration({"input": "q", "target": "1"}, "So the answer is 1."),), answer_prefix="A:")
    texts = components(seed)
    assert texts == {"instruction": "Count the items."}
    assert prompt_of(seed, texts) is seed, "the seed itself, byte for byte"
    new = prompt_of(seed, {"instruction": "  Name each item, then count the asked kind.\n"})
    assert new.instruction == "Name each item, then count the asked kind."
    assert (new.demonstrations, new.answer_prefix, new.answer_format) == \
        (seed.demonstrations, seed.answer_prefix, seed.answer_format), "everything else stays the seed's"


def test_gepa_finds_the_fix_and_the_loop_scores_and_selects_it_on_dev(tmp_path):
    calls = []
    ctx, _ = gepa_context(tmp_path, reflecting(fix_after=2, calls=calls))
    recorded = []
    state = run(ctx.recorded(recorded.append), rounds=1)
    best = state.best
    assert best.candidate.origin == "gepa" and best.prompt.instruction == "Say the magic word, then count." and best.dev == 1.0
    assert best.prompt.answer_format == ctx.task.default_prompt.answer_format
    assert "I do not know." in calls[0] and "Correct Answer" in calls[0], "GEPA reflects on the target's real train errors"
    for doc in ctx.task.docs("dev"):
        assert not any(doc["input"] in prompt for prompt in calls), "no dev question reaches the optimizer"
    assert state.trace[1].method_requests > 0, "GEPA's own metric calls reach the round's record"
    notes = state.trace[1].notes
    assert notes["proposals"] == len(calls) and notes["accepted"] >= 1 and notes["stopped_by"] == "the metric-call budget"
    kept = [c for c in recorded if c["purpose"] == "GEPA reflection"]
    assert [c["messages"][0]["content"] for c in kept] == calls and all(c["round"] == 1 for c in kept), \
        "every reflection is kept as sent, with its reply"
    assert kept[-1]["reply"] == "```\nSay the magic word, then count.\n```"


def test_the_run_budget_maps_to_gepas_max_metric_calls(tmp_path):
    params = GepaParams()
    assert round_budget(params, 4) == 4 * (2 * 3 + 4) and round_budget(GepaParams(metric_calls=25), 4) == 25
    assert max_metric_calls(params, 4, rounds=2) == 4 + 2 * 40, "the seed's dev evaluation, then a budget per round"

    ctx, llm = gepa_context(tmp_path, reflecting(), proposals=2)
    state = run(ctx, rounds=1)
    budget = len(DEV) + 2 * (2 * 3 + len(DEV))  # the seed on dev, then 2 proposals x (a minibatch pair of 3 + dev)
    assert budget == 24 == max_metric_calls(ctx.params, len(DEV), 1)
    spent = gepa_state(tmp_path)["total_num_evals"]
    assert budget <= spent < budget + 2 * 3 + len(DEV), "GEPA stops within one iteration of its budget"
    assert state.trace[1].notes["metric_calls"] == f"{spent} of {budget}"
    assert state.trace[1].notes["proposals"] == len(llm.prompts_sent("```")) > 0

    # a round's budget at 10 dev examples: 4 proposals x (2 x 3 + 10) = 64 metric calls; the last iteration
    # may run over by a minibatch pair and a dev pass (6 + 10); one reflection per 6 metric calls at most
    rows = projected_rounds("gepa", n_train=16, n_dev=10, rounds=2, beam=2)
    assert rows[0]["optimizer_calls"] == 2 and rows[1]["target_requests"] == 64 + 6 + 10
    assert rows[1]["optimizer_calls"] == 11


def test_later_rounds_continue_one_gepa_run_and_resume_continues_its_state(tmp_path):
    ctx, _ = gepa_context(tmp_path, reflecting())
    checkpoints = []
    run(ctx, rounds=1, checkpoints=checkpoints)
    after_one = gepa_state(tmp_path)
    seed = checkpoints[-1].method_state
    assert seed["node"] in {n.key for n in checkpoints[-1].nodes}, "the seed is the method's state, in the checkpoint"

    resumed, llm2 = gepa_context(tmp_path, reflecting())  # a new process: fresh bridge, fresh optimizer client
    state = run(resumed, rounds=2, state=checkpoints[-1])
    after_two = gepa_state(tmp_path)
    assert after_two["total_num_evals"] >= max_metric_calls(ctx.params, len(DEV), 2)
    assert after_two["full_program_trace"][: len(after_one["full_program_trace"])] == after_one["full_program_trace"], \
        "round 2 continued round 1's GEPA run"
    made = len(llm2.prompts_sent("```"))
    assert state.trace[2].notes["proposals"] == state.trace[1].notes["proposals"] + made
    assert state.method_state == seed and not (tmp_path / "gepa" / "seed.json").exists(), "no file of the method's own"


def test_a_run_killed_inside_gepa_resumes_from_gepas_last_iteration(tmp_path):
    calls = []

    def killed(messages):
        if "```" in messages[0]["content"] and len(calls) == 3:
            raise KeyboardInterrupt
        return reflecting(calls=calls)(messages)

    ctx, _ = gepa_context(tmp_path, killed)
    checkpoints = []
    with pytest.raises(KeyboardInterrupt):
        run(ctx, rounds=1, checkpoints=checkpoints)
    assert checkpoints[-1].round == 0
    iterations = gepa_state(tmp_path)["i"]
    assert iterations >= 2, "GEPA saved its state before the interrupted iteration"

    resumed, llm = gepa_context(tmp_path, reflecting())
    state = run(resumed, rounds=1, state=checkpoints[-1])
    assert state.round == 1
    notes = state.trace[1].notes
    assert notes["proposals"] == 3 + len(llm.prompts_sent("```")), "the three proposals before the kill are kept"


def test_the_optimizer_budget_ends_gepas_run_and_keeps_what_it_found(tmp_path):
    # round 0 writes two instructions, which leaves one call for a reflection
    ctx, _ = gepa_context(tmp_path, reflecting(fix_after=1), max_calls=2 + 1)
    state = run(ctx, rounds=2)
    assert state.round == 1 and state.stopped == "optimizer call budget of 3 reached"
    assert state.trace[1].notes["stopped_by"] == "optimizer call budget of 3 reached"
    assert state.best.prompt.instruction == "Say the magic word, then count.", "round 1 completed with GEPA's candidate"


def test_a_missing_gepa_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "gepa", None)
    with pytest.raises(AboError, match=r"pip install 'lm-eval-abo\[gepa\]'"):
        engine()


def test_another_runs_gepa_state_is_refused(tmp_path):
    ctx, _ = gepa_context(tmp_path, reflecting())
    checkpoints = []
    run(ctx, rounds=1, checkpoints=checkpoints)
    other, _ = gepa_context(tmp_path, lambda m: "<prompt>Something else entirely.</prompt>" if "```" not in m[0]["content"]
                            else "```\nx\n```")
    other.task.default_prompt = Prompt(instruction="Another task's baseline.")
    with pytest.raises(AboError, match="holds the GEPA state of another run"):  # GEPA's own state names its seed
        run(other, rounds=1)
    foreign = checkpoints[0]  # round 0 of the first run, with a seed from a run it never had
    foreign.method_state = {"prompt": Prompt(instruction="x").to_dict(), "node": "0" * 64}
    with pytest.raises(AboError, match="holds the GEPA state of another run"):
        run(gepa_context(tmp_path, reflecting())[0], rounds=1, state=foreign)
