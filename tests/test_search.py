"""The shared search loop, with stand-ins for both models: a rule-based target (right exactly when
the prompt says "magic") and a scripted optimizer. Scoring still runs through lm-eval."""

import logging
import re

import pytest
from conftest import ScriptedLLM, make_bridge, make_context, make_search, rule_lm

from lm_eval_abo.cost.ledger import BudgetExhausted
from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.result import TIMINGS, SearchState


def context(reply, method="apo", **params):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(reply)
    return make_context(bridge, llm, method, dev_indices=[0, 1, 2, 3], **params), llm


def improving_reply(messages):
    """Edits add "magic" (the target then gets everything right); other replies are plain."""
    text = messages[0]["content"]
    if "<reason>" in text:
        return "<reason>The instruction never says the magic word.</reason>"
    if "improved instruction" in text:
        return "<prompt>Say the magic word, then count.</prompt>"
    if "variation" in text:
        return "<prompt>Count every item one by one.</prompt>"
    return "<prompt>Count the items.</prompt>"


def run(ctx, rounds=2, beam=2, state=None, checkpoints=None, method="apo"):
    search = make_search(method, ctx, beam=beam, rounds=rounds)
    saved = checkpoints if checkpoints is not None else []
    return search.run(state, lambda s, r: saved.append(SearchState.from_dict(s.to_dict())), lambda r: None)


def test_apo_round_finds_errors_reflects_edits_and_selects_on_dev():
    ctx, llm = context(improving_reply, gradients=1, paraphrases=1)
    state = run(ctx, rounds=1)
    assert [r.round for r in state.trace] == [0, 1]
    round0, round1 = state.trace
    assert [c.origin for c in round0.candidates] == ["baseline", "initial"]
    assert {c.origin for c in round1.candidates} == {"edit", "paraphrase"}
    best = state.best
    assert best.prompt.instruction == "Say the magic word, then count." and best.dev == 1.0
    assert best.prompt.answer_format == ctx.task.default_prompt.answer_format, "edits keep the answer format"
    assert round1.flips == {"fixed": [0, 1, 2, 3], "broken": []}
    gradient = llm.prompts_sent("Give 1 reason")[0]
    assert "I do not know." in gradient, "reflection sees the target's real (train) errors"
    assert "magic" not in state.nodes[0].prompt.instruction and len(state.beam) == 2


def test_beam_keeps_the_incumbent_on_ties():
    ctx, _ = context(lambda m: "<prompt>Count the items.</prompt>" if "variation" not in m[0]["content"] else "<prompt>Another plain one.</prompt>")
    state = run(ctx, rounds=1, beam=1, method="ape")
    assert state.best.candidate.origin == "baseline"


def test_malformed_replies_are_retried_then_dropped_and_the_run_goes_on(caplog):
    def reply(messages):
        if len(messages) > 1:  # the format reminder: still no tags
            return "Sorry, here it is: count things."
        return "I would rather chat about the weather." if "variation" in messages[0]["content"] else "<prompt>Count.</prompt>"

    ctx, llm = context(reply, method="ape")
    with caplog.at_level(logging.WARNING, logger="lm_eval_abo"):
        state = run(ctx, rounds=1, method="ape")
    assert state.round == 1 and state.trace[1].candidates == ()
    assert "dropped a reply without <prompt>" in caplog.text
    reminders = [m for m in llm.requests if len(m) == 3]
    assert reminders and "did not contain" in reminders[0][2]["content"]


def test_budget_exhaustion_keeps_the_last_completed_round():
    ctx, llm = context(improving_reply, gradients=1, paraphrases=1)

    def limited(requests, desc="", temperature=None):
        if llm.usage.calls >= 2:
            raise BudgetExhausted("optimizer call budget of 2 reached")
        return ScriptedLLM.complete_many(llm, requests, desc, temperature)

    llm.complete_many = limited
    checkpoints = []
    state = run(ctx, rounds=2, checkpoints=checkpoints)
    assert state.round == 0 and state.stopped == "optimizer call budget of 2 reached"
    assert checkpoints[-1].stopped and checkpoints[-1].round == 0 and state.best.candidate.origin in ("baseline", "initial")


def test_budget_exhausted_in_round_zero_still_scores_the_baseline():
    ctx, llm = context(improving_reply)
    llm.complete_many = lambda requests, desc="", temperature=None: (_ for _ in ()).throw(BudgetExhausted("no budget"))
    state = run(ctx, rounds=2)
    assert state.round == 0 and [n.candidate.origin for n in state.nodes] == ["baseline"]


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_result():
    ctx, _ = context(improving_reply, gradients=1, paraphrases=1)
    checkpoints = []
    full = run(ctx, rounds=2, checkpoints=checkpoints)
    after_round_1 = next(c for c in checkpoints if c.round == 1)
    ctx2, _ = context(improving_reply, gradients=1, paraphrases=1)
    resumed = run(ctx2, rounds=2, state=after_round_1)

    def comparable(state):
        d = state.to_dict()
        for r in d["trace"]:
            for key in TIMINGS:
                r.pop(key)
        return d["beam"], [n["prompt"] for n in d["nodes"]], [{k: v for k, v in r.items() if k != "target"} for r in d["trace"]]

    assert comparable(resumed) == comparable(full)


def test_patience_stops_a_stalled_search():
    ctx, _ = context(lambda m: "<prompt>Count the items.</prompt>", method="ape")
    state = make_search("ape", ctx, beam=1, rounds=5, patience=1).run(None, lambda s, r: None, lambda r: None)
    assert state.round == 1 and state.stopped == "dev score did not improve for 1 round(s)"


def test_a_search_that_runs_all_its_rounds_has_not_stopped_early():
    ctx, _ = context(lambda m: "<prompt>Count the items.</prompt>", method="ape")
    state = make_search("ape", ctx, beam=1, rounds=2, patience=5).run(None, lambda s, r: None, lambda r: None)
    assert state.round == 2 and state.stopped is None


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_a_round_on_the_scripted_optimizer(name):
    calls = []

    def reply(messages):
        """Well-formed, ever different replies that never fix the (rule-based) target's errors."""
        calls.append(1)
        text = messages[0]["content"]
        if "<procedure>" in text:
            return f"<procedure>1. List the items.\n2. Add the counts, version {len(calls)}.\n3. Say the answer.</procedure>"
        if "<solution>" in text:  # works through every step shown
            target = re.search(r"correct final answer is (\d+)", text)
            steps = "\n".join(f"Step {i}: count." for i in range(1, len(re.findall(r"^\d+\. ", text, flags=re.M)) + 1))
            return f"<solution>{steps}\nSo the answer is {target.group(1) if target else 0}.</solution>"
        if "<steps>" in text:
            return f"<steps>1. Check the items again, version {len(calls)}.</steps>"
        if "<step>" in text:
            return "<step>2</step><kind>not_followed</kind><why>It skipped step 2.</why>"
        if "```" in text:  # GEPA's reflection prompt asks for the new text in a ``` block
            return f"```\nCount plainly, version {len(calls)}.\n```"
        tag = next(t for t in ("reason", "summary", "prompt") if f"<{t}>" in text)
        return f"<{tag}>Count plainly, version {len(calls)}.</{tag}>"

    ctx, llm = context(reply, method=name)
    state = run(ctx, rounds=1, method=name)
    # GEPA's rejected proposals never become candidates; its round notes count them
    proposed = len(state.trace[1].candidates) or state.trace[1].notes.get("proposals", 0)
    assert state.round == 1 and proposed >= 1, state.trace
    assert llm.usage.calls >= 1 and METHODS[name].projected(ctx.params, 2, initial=True, n_dev=4).calls >= 1


def test_a_resumed_run_that_had_converged_stays_stopped():
    ctx, llm = context(lambda m: "<prompt>Count the items.</prompt>", method="ape")
    search = make_search("ape", ctx, beam=1, rounds=3, patience=1)
    state = search.run(None, lambda s, r: None, lambda r: None)
    assert state.round == 1 and "did not improve" in state.stopped
    asked = len(llm.requests)
    resumed = SearchState.from_dict(state.to_dict())
    resumed.stopped = None  # what --resume does, so a budget stop can continue with a larger budget
    again = search.run(resumed, lambda s, r: None, lambda r: None)
    assert again.round == 1 and "did not improve" in again.stopped and len(llm.requests) == asked
