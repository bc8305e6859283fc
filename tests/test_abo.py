"""ABO's parts with a scripted optimizer and a rule-based target (the real models run in test_optimize)."""

import re

import pytest
from conftest import ScriptedLLM, make_bridge, rule_lm

from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.abo import (
    Abo, parse_location, parse_solution, parse_steps, splice, step_failure_table,
)
from lm_eval_abo.optimizers.base import Context
from lm_eval_abo.optimizers.search import Search

PROCEDURE = "<procedure>\n1. List the items with counts.\nStep 2: Keep the asked kind\n   (drop the rest).\n3) Add the counts.\n</procedure>"


def test_parse_steps_accepts_the_usual_numberings_and_wrapped_lines():
    assert parse_steps(PROCEDURE) == ["List the items with counts.", "Keep the asked kind (drop the rest).", "Add the counts."]
    chatter = "<procedure>1. Count.\n2. Add.\n\nNow let's solve question 1: I have a cat.</procedure>"
    assert parse_steps(chatter) == ["Count.", "Add."], "text after a blank line is not part of the last step"
    assert parse_steps("<procedure>1. Only one step.</procedure>") is None
    assert parse_steps("1. no tags\n2. at all") is None
    assert parse_steps("<steps>1. A single new step.</steps>", "steps", min_steps=1) == ["A single new step."]


def test_parse_location():
    assert parse_location("<step>2</step><kind>not followed</kind><why>Skipped it.</why>", 3) == {"step": 2, "kind": "not_followed", "why": "Skipped it."}
    assert parse_location("<step>Step 3</step><kind>wrong</kind>", 3)["step"] == 3
    assert parse_location("<step>7</step><kind>wrong</kind>", 3) is None, "a step that does not exist"
    assert parse_location("<step>1</step><kind>confused</kind>", 3) is None
    assert parse_location("<step>the first failing step</step><kind>wrong</kind>", 3) is None


def test_parse_solution_takes_the_tag_or_the_steps():
    assert parse_solution("<solution>Step 1: x. So the answer is 2.</solution>") == "Step 1: x. So the answer is 2."
    assert parse_solution("Sure!\n```\nStep 1: x\nSo the answer is 2.\n```") == "Step 1: x\nSo the answer is 2."
    assert parse_solution("The answer is 2.") is None


def test_splice_and_failure_table():
    steps = ["a", "b", "c"]
    assert splice(steps, 2, ["b1", "b2"]) == ["a", "b1", "b2", "c"]
    assert splice(steps, 2, steps) is None and splice(steps, 2, ["b"]) is None
    located = [{"step": 2, "kind": "not_followed"}, {"step": 2, "kind": "wrong"}, {"step": 3, "kind": "wrong"}, {"step": 2, "kind": "not_followed"}]
    assert step_failure_table(located, 3) == [
        {"step": 1, "not_followed": 0, "wrong": 0}, {"step": 2, "not_followed": 2, "wrong": 1}, {"step": 3, "not_followed": 0, "wrong": 1},
    ]
    assert Abo._revision_plans(located, 2) == [(2, "not_followed"), (3, "wrong")]
    assert Abo._revision_plans(located, 3)[-1] == (None, None), "then the whole procedure"
    assert Abo._revision_plans([None, None], 1) == [(None, None)], "nothing located: revise from the errors alone"


def gold(text: str) -> str:
    found = re.search(r"correct final answer is (\d+)", text)
    return found.group(1) if found else "0"


def make_reply(wrong_demos: bool = False, echo: str = "", locations=("<step>2</step><kind>not_followed</kind><why>It skipped step 2.</why>",)):
    """Procedures, demonstrations (every other one wrong when asked), localisations, step rewrites."""
    counter = {"demo": 0, "locate": 0}

    def reply(messages):
        text = messages[0]["content"]
        if "<procedure>" in text and "Write the steps" in text:
            return "<procedure>1. List the items with counts.\n2. Keep the asked kind.\n3. Add the counts.</procedure>"
        if "<solution>" in text:
            counter["demo"] += 1
            answer = gold(text)
            if wrong_demos and counter["demo"] % 2 == 0:
                answer = str(int(answer) + 5)
            return f"<solution>Step 1: listed.\nStep 2: kept.\nStep 3: added. So the answer is {answer}.{echo}</solution>"
        if "<step>" in text and "first" in text:
            counter["locate"] += 1
            return locations[(counter["locate"] - 1) % len(locations)]
        if "<steps>" in text:
            return "<steps>1. Name the kind the question asks for.\n2. Cross out every item of another kind.</steps>"
        if "<procedure>" in text:
            return "<procedure>1. List only the asked kind.\n2. Add their counts.</procedure>"
        return "?"

    return reply


def abo_context(reply, **params):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(reply)
    ctx = Context(llm=llm, bridge=bridge, params={**METHODS["abo"].defaults, **params}, seed=3, train_pool=list(range(8)))
    return ctx, llm


def test_step_zero_keeps_only_demonstrations_the_task_filter_verifies():
    ctx, llm = abo_context(make_reply(wrong_demos=True), demos=3, demo_attempts=6)
    [candidate] = METHODS["abo"].initial(ctx, beam=1)
    prompt = candidate.prompt
    assert prompt.procedure == ("List the items with counts.", "Keep the asked kind.", "Add the counts.")
    assert prompt.answer_format == ctx.bridge.default_prompt.answer_format and prompt.answer_prefix == "Step 1:"
    assert len(prompt.demonstrations) == 3 and candidate.notes["demos_verified"] == "3/6"
    for demo in prompt.demonstrations:
        assert demo.output.endswith(f"So the answer is {demo.doc['target']}."), "a wrong-answer demonstration was kept"
    assert len(llm.prompts_sent("<solution>")) == 6


def test_verified_demonstrations_end_at_their_answer():
    echo = '\n\nEnd your answer with "So the answer is N." where N is a number.'
    ctx, _ = abo_context(make_reply(echo=echo), demos=2, demo_attempts=2)
    [candidate] = METHODS["abo"].initial(ctx, beam=1)
    assert [d.output for d in candidate.prompt.demonstrations] == [
        f"Step 1: listed.\nStep 2: kept.\nStep 3: added. So the answer is {d.doc['target']}." for d in candidate.prompt.demonstrations]


def test_switches_for_the_ablations():
    ctx, _ = abo_context(make_reply(wrong_demos=True), demos=3, verify=0, demo_attempts=4)
    [unverified] = METHODS["abo"].initial(ctx, beam=1)
    assert len(unverified.prompt.demonstrations) == 3 and any(
        not d.output.endswith(f"{d.doc['target']}.") for d in unverified.prompt.demonstrations)
    ctx, llm = abo_context(make_reply(), **METHODS["abo-ablation"].defaults)
    [bare] = METHODS["abo-ablation"].initial(ctx, beam=1)
    assert bare.prompt.demonstrations == () and not llm.prompts_sent("<solution>")


def run_round(ctx, method="abo"):
    search = Search(METHODS[method], ctx, beam_size=2, dev_indices=[0, 1, 2, 3], minibatch=4, patience=None)
    return search.run(1, None, lambda s, r: None, lambda r: None)


def test_errors_are_located_and_the_failing_step_is_revised():
    ctx, llm = abo_context(make_reply(), revisions=1, max_errors=3, demos=1)
    state = run_round(ctx)
    revisions = [n for n in state.nodes if n.candidate.origin == "revision"]
    assert revisions, [n.candidate.origin for n in state.nodes]
    notes = revisions[0].candidate.notes
    assert notes["revised_step"] == 2 and notes["kind"] == "not_followed"
    table = notes["diagnosis"]["step_failures"]
    assert table[1] == {"step": 2, "not_followed": 3, "wrong": 0}, "three errors, each located at step 2"
    assert all(e["step"] == 2 and e["kind"] == "not_followed" for e in notes["diagnosis"]["errors"])
    assert revisions[0].prompt.procedure == (
        "List the items with counts.", "Name the kind the question asks for.", "Cross out every item of another kind.", "Add the counts.")
    [rewrite] = llm.prompts_sent("Rewrite step 2")
    assert "two or three smaller, clearer steps" in rewrite and "It skipped step 2." in rewrite
    assert "I do not know." in rewrite, "the revision sees the target's real output"


def test_without_localisation_the_whole_procedure_is_revised():
    ctx, llm = abo_context(make_reply(), revisions=1, localise=0, demos=0)
    state = run_round(ctx)
    assert not llm.prompts_sent("first failing") and not llm.prompts_sent("get wrong first")
    revised = [n for n in state.nodes if n.candidate.origin == "revision"]
    assert revised and revised[0].prompt.procedure == ("List only the asked kind.", "Add their counts.")
    assert revised[0].candidate.notes["revised_step"] is None


@pytest.mark.parametrize("name", ["abo", "abo-ablation"])
def test_projection_counts_localisation_revisions_and_demonstrations(name):
    params = METHODS[name].defaults
    plan = METHODS[name].projected(params, beam=2, initial=False)
    demo_calls = params["demo_attempts"] if params["demos"] else 0
    assert plan.calls == 2 * (params["max_errors"] + params["revisions"] * (1 + demo_calls))
    assert plan.candidates == 2 * params["revisions"]
    assert {a.template for a in plan.asks if a.calls} == {"abo_locate", "abo_revise_step"} | ({"abo_demonstration"} if demo_calls else set())



def test_only_behaviour_prompts_have_their_train_batch_scored():
    """ABO diagnoses the errors of prompts with a procedure; the baseline in the beam gets new procedures
    written from the task alone, so its train batch is never sent to the target."""
    ctx, _ = abo_context(make_reply(), revisions=1, demos=0)
    state = run_round(ctx)
    assert [n.candidate.origin for n in state.nodes if n.round == 0] == ["baseline", "procedure"], "both in the beam of 2"
    train_questions = [f"Q: {d['input']}\nA:" for d in ctx.bridge.docs("train")]
    on_train = [p for p in ctx.bridge.counter.inner.seen if any(q in p for q in train_questions)]
    assert on_train and all(p.endswith("A: Step 1:") for p in on_train), "only the procedure prompt ran on train"
