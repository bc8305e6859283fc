"""--candidates N: every method asks for N new candidates a round, round 0 included, so methods compare at
equal candidates (a scripted optimizer whose replies are well-formed and all different, a rule-based target)."""

import re
from dataclasses import replace

import pytest
from conftest import ScriptedLLM, make_bridge, make_context, make_search, projected_rounds, rule_lm

from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.base import quotas


def distinct_replies():
    calls = []

    def reply(messages):
        calls.append(1)
        text, v = messages[0]["content"], len(calls)
        if "<procedure>" in text and "Write the steps" in text:
            return f"<procedure>1. List the items.\n2. Add the counts, version {v}.\n3. Say the answer.</procedure>"
        if "<solution>" in text:  # every step, and the answer when it is shown
            target = re.search(r"correct final answer is (\d+)", text)
            steps = "\n".join(f"Step {i}: count." for i in range(1, len(re.findall(r"^\d+\. ", text, flags=re.M)) + 1))
            return f"<solution>{steps}\nSo the answer is {target.group(1) if target else 0}.</solution>"
        if "<step>" in text:
            return "<step>2</step><kind>wrong</kind><why>It added wrongly.</why>"
        if "<steps>" in text:
            return f"<steps>1. Add the counts again, version {v}.</steps>"
        if "<procedure>" in text:
            return f"<procedure>1. List the items again.\n2. Add them, version {v}.</procedure>"
        if "```" in text:  # GEPA's reflection prompt
            return f"```\nCount plainly, version {v}.\n```"
        if "<analysis>" in text:
            return f"<analysis>Miscounted.</analysis><summary>Count each kind, version {v}.</summary>"
        tag = next(t for t in ("reason", "summary", "prompt") if f"<{t}>" in text)
        asked = re.search(r"write (\d+) new instructions", text)
        return "".join(f"<{tag}>Count plainly, version {v}.{i}.</{tag}>" for i in range(int(asked.group(1)) if asked else 1))

    return reply


def test_quotas_deal_a_total_over_parts_evenly():
    assert quotas(3, 2) == [2, 1] and quotas(7, 3) == [3, 2, 2] and quotas(2, 3) == [1, 1, 0] and quotas(3, 0) == []


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_asks_for_the_candidates_it_is_given(name):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    ctx = replace(make_context(bridge, ScriptedLLM(distinct_replies()), name, dev_indices=[0, 1, 2, 3]), candidates=3)
    state = make_search(name, ctx, beam=2, rounds=1).run(None, lambda s, r: None, lambda r: None)
    new = [[c for c in r.candidates if c.origin != "baseline"] for r in state.trace]
    assert len(new[0]) == 3, "round 0"
    if name == "gepa":
        # a round's budget pays for 3 accepted proposals: 4 dev examples for the seed, then 3 x (2 x 3 + 4) = 34
        # metric calls; GEPA hands back at most 3 prompts, its best and its Pareto front (none new: the rule-based
        # target rejects every proposal)
        assert state.trace[1].notes["metric_calls"].endswith(" of 34") and len(new[1]) <= 3
    else:
        assert len(new[1]) == 3, [c.origin for c in new[1]]
    plan = METHODS[name].projected(ctx.params, 2, initial=True, n_dev=4, candidates=3)
    assert plan.candidates == 3
    if name != "gepa":  # GEPA's candidates come from its engine's budget
        assert METHODS[name].projected(ctx.params, 2, initial=False, n_dev=4, candidates=3).candidates == 3


def test_without_candidates_each_method_keeps_its_own_counts():
    """At the defaults and beam 2: APE 2 paraphrases a kept prompt, OPRO 4 prompts, PromptAgent 3 steps of 1."""
    counts = {name: METHODS[name].projected(METHODS[name].params, 2, initial=False, n_dev=4).candidates
              for name in ("ape", "opro", "promptagent", "promptagent-beam", "abo")}
    assert counts == {"ape": 4, "opro": 4, "promptagent": 3, "promptagent-beam": 4, "abo": 4}


def test_the_setting_is_checked_recorded_and_projected():
    with pytest.raises(AboError, match="candidates must be a whole number of at least 1, got 0"):
        OptimizeConfig(task="abo_object_counting_synth", candidates=0).resolved()
    # OPRO at --candidates 5: 5 calls a round; its target requests: 5 candidates on 4 dev and 8 train (score subset)
    plan = projected_rounds("opro", n_train=8, n_dev=4, rounds=1, beam=2, candidates=5)
    assert [r["optimizer_calls"] for r in plan] == [5, 5] and plan[1]["target_requests"] == 5 * (4 + 8)


def test_apo_writes_more_paraphrases_when_its_share_needs_them():
    """16 over 2 beam prompts: 8 each. 2 gradients, 1 edit each: 2 edits, so 8 children need 2 paraphrases of each
    edit and of the prompt (2 + 3 x 2 = 8, where the default 1 gives 5): 12 paraphrase calls in all."""
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(distinct_replies())
    ctx = replace(make_context(bridge, llm, "apo", dev_indices=[0, 1, 2, 3]), candidates=16)
    state = make_search("apo", ctx, beam=2, rounds=1).run(None, lambda s, r: None, lambda r: None)
    assert len(state.trace[1].candidates) == 16
    round_1 = llm.requests[len(llm.requests) - (2 * 2 + 2 * 2 + 12):]
    assert sum("variation" in m[0]["content"] for m in round_1) == 12
    # the projection is at most: were every edit to fail, 8 paraphrases of each prompt itself
    assert METHODS["apo"].projected(ctx.params, 2, initial=False, n_dev=4, candidates=16).calls == 4 + 4 + 16
