"""ABO's parts with a scripted optimizer and a rule-based target (the real models run in test_optimize)."""

import re

import pytest
from conftest import ScriptedLLM, make_bridge, make_context, make_search, rule_lm

from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.abo import Abo
from lm_eval_abo.optimizers.procedure import (
    capped,
    follows,
    parse_location,
    parse_solution,
    parse_steps,
    splice,
    step_check,
    step_failure_table,
)
from lm_eval_abo.optimizers.result import SearchResult
from lm_eval_abo.reports.run_report import Heading, run_report

PROCEDURE = "<procedure>\n1. List the items with counts.\nStep 2: Keep the asked kind\n   (drop the rest).\n3) Add the counts.\n</procedure>"
STEPS = ["List the items with counts.", "Keep the asked kind.", "Add the counts."]


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


def test_a_solution_follows_the_procedure_only_with_every_step_in_order():
    ok = "Step 1: a cat (1).\nStep 2: keep it.\n**Step 3:** 1. So the answer is 1."
    assert follows(ok, 3) == ok.index("**Step 3:**")
    assert follows("Step 1: a.\nStep 3: 1. So the answer is 1.", 3) is None, "step 2 skipped"
    assert follows("Step 1: a.\nStep 2 and 3: 1. So the answer is 1.", 3) is None, "steps merged"
    assert follows("Step 2: a.\nStep 1: b.\nStep 3: c.", 3) is None, "out of order"
    assert follows("Step 1: a.\nStep 2: b.\nStep 2: again.\nStep 3: c.", 3) is None, "a step twice"
    assert follows("Step 1: a.\nStep 2: b.", 3) is None, "stops before the last step"


def test_splice_never_duplicates_and_the_answer_step_survives_a_cut():
    steps = ["a", "b", "c", "d", "e"]
    assert splice(steps, 2, ["b1", "b2"]) == ["a", "b1", "b2", "c", "d", "e"]
    assert splice(steps, 2, steps) is None and splice(steps, 2, ["b"]) is None
    near_complete = ["a", "b1", "c", "d", "e2"]  # a whole procedure handed back for step 2
    assert splice(steps, 2, near_complete) == near_complete, "a full revision, not 9 steps with duplicates"
    assert splice(steps, 2, ["b1", "c", "d"]) == ["b1", "c", "d"], "repeats other steps: a full revision"
    assert splice(["a", "b", "c"], 2, ["b1", "b2", "b3"]) == ["a", "b1", "b2", "b3", "c"], "a step split in three"
    assert capped(["1", "2", "3", "4", "5", "answer"], 4) == ["1", "2", "3", "answer"] and capped(["1", "2"], 4) == ["1", "2"]


def test_failure_table_and_revision_plans():
    located = [{"step": 2, "kind": "not_followed"}, {"step": 2, "kind": "wrong"}, {"step": 3, "kind": "wrong"}, {"step": 2, "kind": "not_followed"}]
    assert step_failure_table(located, 3) == [
        {"step": 1, "not_followed": 0, "wrong": 0}, {"step": 2, "not_followed": 2, "wrong": 1}, {"step": 3, "not_followed": 0, "wrong": 1},
    ]
    assert Abo._revision_plans(located, 2) == [(2, "not_followed"), (3, "wrong")]
    assert Abo._revision_plans(located, 3)[-1] == (None, None), "then the whole procedure"
    assert Abo._revision_plans([None, None], 1) == [(None, None)], "nothing located: revise from the errors alone"


def gold(text: str) -> str | None:
    found = re.search(r"correct final answer is (\d+)", text)
    return found.group(1) if found else None


def make_reply(demo="hinted", echo: str = "", procedure: str | None = None,
               locations=("<step>2</step><kind>not_followed</kind><why>It skipped step 2.</why>",)):
    """Procedures, demonstrations, localisations, step rewrites. `demo`: "hinted" (every step; the right
    answer only when the gold answer is shown), "skipping" (step 2 skipped) or "wrong" (never right)."""
    counter = {"locate": 0}

    def reply(messages):
        text = messages[0]["content"]
        if "<procedure>" in text and "Write the steps" in text:
            return procedure or "<procedure>1. List the items with counts.\n2. Keep the asked kind.\n3. Add the counts.</procedure>"
        if "<solution>" in text:  # one "Step i:" per step of the procedure shown
            answer = (gold(text) if demo != "wrong" else None) or "999"
            numbers = range(1, len(re.findall(r"^\d+\. ", text, flags=re.M)) + 1)
            steps = "\n".join(f"Step {i}: done." for i in numbers if not (demo == "skipping" and i == 2))
            return f"<solution>{steps} So the answer is {answer}.{echo}</solution>"
        if "<step>" in text and "first" in text:
            counter["locate"] += 1
            return locations[(counter["locate"] - 1) % len(locations)]
        if "<steps>" in text:
            return "<steps>1. Name the kind the question asks for.\n2. Cross out every item of another kind.</steps>"
        if "<procedure>" in text:
            return "<procedure>1. List only the asked kind.\n2. Add their counts.</procedure>"
        return "?"

    return reply


def abo_context(reply, method="abo", **params):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(reply)
    return make_context(bridge, llm, method, seed=3, dev_indices=[0, 1, 2, 3], **params), llm


def test_a_demonstration_is_written_without_the_answer_first_and_with_it_only_as_a_fallback():
    ctx, llm = abo_context(make_reply("hinted"), demos=3, demo_attempts=4)
    [candidate] = METHODS["abo"].initial(ctx, beam=1).candidates
    prompt = candidate.prompt
    assert prompt.procedure == ("List the items with counts.", "Keep the asked kind.", "Add the counts.")
    assert prompt.answer_format == ctx.task.answer_format and prompt.answer_prefix == "Step 1:"
    asked = llm.prompts_sent("<solution>")
    assert len(asked) == 8 and not any("correct final answer" in a for a in asked[:4]), "first without the answer"
    assert all("correct final answer" in a for a in asked[4:]), "then the failed ones with it"
    assert candidate.notes["demos_verified"] == {
        "tried": 4, "without_answer": {"asked": 4, "answer": 4}, "with_answer": {"asked": 4, "verified": 4},
        "kept": 3, "kept_with_answer": 3}, "all 3 kept were written with the answer shown"
    for demo in prompt.demonstrations:
        assert demo.output.endswith(f"So the answer is {demo.doc['target']}.")


def test_a_demonstration_that_skips_a_step_is_rejected_unless_only_the_answer_is_checked():
    ctx, _ = abo_context(make_reply("skipping"), demos=2, demo_attempts=2)
    proposal = METHODS["abo"].initial(ctx, beam=1)
    assert proposal.candidates == [], "no demonstration verified: the procedure is dropped"
    [dropped] = proposal.dropped
    assert dropped.origin == "procedure" and "no demonstration verified" in dropped.reason
    assert "'without_answer': {'asked': 2, 'steps': 2}, 'with_answer': {'asked': 2, 'steps': 2}" in dropped.reason
    ctx, _ = abo_context(make_reply("skipping"), demos=2, demo_attempts=2, verify="answer")
    [candidate] = METHODS["abo"].initial(ctx, beam=1).candidates
    assert len(candidate.prompt.demonstrations) == 2, "verify=answer: today's rule, the answer alone"


def test_a_reply_without_a_procedure_is_recorded_as_dropped():
    ctx, _ = abo_context(lambda prompt: "I would count the objects carefully.", demos=2, demo_attempts=2)
    proposal = METHODS["abo"].initial(ctx, beam=1)
    assert proposal.candidates == []
    assert [(d.origin, d.reason) for d in proposal.dropped] == [
        ("procedure", "the optimizer's reply held no <procedure> of 2 or more numbered steps")]


def test_a_verified_demonstration_keeps_every_step_and_ends_at_its_answer():
    echo = '\n\nEnd your answer with "So the answer is N." where N is a number.'
    ctx, _ = abo_context(make_reply("hinted", echo=echo), demos=2, demo_attempts=2)
    [candidate] = METHODS["abo"].initial(ctx, beam=1).candidates
    assert [d.output for d in candidate.prompt.demonstrations] == [
        f"Step 1: done.\nStep 2: done.\nStep 3: done. So the answer is {d.doc['target']}." for d in candidate.prompt.demonstrations]


def test_switches_for_the_ablations():
    ctx, _ = abo_context(make_reply("wrong"), demos=3, verify="none", demo_attempts=4)
    [unverified] = METHODS["abo"].initial(ctx, beam=1).candidates
    assert len(unverified.prompt.demonstrations) == 3 and all(d.output.endswith("999.") for d in unverified.prompt.demonstrations)
    ctx, llm = abo_context(make_reply(), method="abo-ablation")
    [bare] = METHODS["abo-ablation"].initial(ctx, beam=1).candidates
    assert bare.prompt.demonstrations == () and not llm.prompts_sent("<solution>")


def run_round(ctx, method="abo", rounds=1, no_copy=True):
    return make_search(method, ctx, rounds=rounds, no_copy=no_copy).run(None, lambda s, r: None, lambda r: None)


def test_errors_are_located_on_the_whole_answer_and_a_step_not_followed_gets_both_repairs():
    ctx, llm = abo_context(make_reply(), revisions=2, max_errors=3, demos=1)
    state = run_round(ctx)
    [behaviour] = [n for n in state.nodes if n.round == 0 and n.prompt.procedure]
    assert [n.candidate.origin for n in state.nodes if n.candidate.parent == behaviour.key] == [
        "revision", "demonstration"], "2 repairs: step 2's revision, then its demonstration repair"
    revisions = [n for n in state.nodes if n.candidate.origin == "revision"]
    notes = revisions[0].candidate.notes
    assert notes["revised_step"] == 2 and notes["kind"] == "not_followed"
    table = notes["diagnosis"]["step_failures"]
    assert table[1] == {"step": 2, "not_followed": 3, "wrong": 0}, "three errors, each located at step 2"
    assert revisions[0].prompt.procedure == (
        "List the items with counts.", "Name the kind the question asks for.", "Cross out every item of another kind.", "Add the counts.")
    [rewrite] = llm.prompts_sent("Rewrite step 2")
    assert "two or three smaller, clearer steps" in rewrite and "It skipped step 2." in rewrite
    located = llm.prompts_sent("get wrong first")
    assert located and all("The model's answer:\nStep 1: I do not know." in text for text in located), \
        "the whole answer, with the prefix the target was given"
    [repair] = [n for n in state.nodes if n.candidate.origin == "demonstration"]
    assert repair.prompt.procedure == tuple(STEPS) and repair.candidate.notes["repaired_step"] == 2
    assert repair.prompt.demonstrations, "the same steps, shown with a demonstration that exercises step 2"


def test_without_localisation_the_whole_procedure_is_revised():
    ctx, llm = abo_context(make_reply(), revisions=1, localise=0, demos=0)
    state = run_round(ctx)
    assert not llm.prompts_sent("first failing") and not llm.prompts_sent("get wrong first")
    revised = [n for n in state.nodes if n.candidate.origin == "revision"]
    assert revised and revised[0].prompt.procedure == ("List only the asked kind.", "Add their counts.")
    assert revised[0].candidate.notes["revised_step"] is None


# Per beam prompt at the defaults (max_errors 3, revisions 2, demos 3 from 4 attempts, hint fallback): 3 locations,
# 2 repairs, each at most a revision call and 8 demonstration calls (4 without the answer, 4 with it):
# 3 + 2 x 9 = 21 calls, 2 candidates. The ablation: 3 + 2 = 5 calls, 2 candidates.
@pytest.mark.parametrize("name, calls, candidates, templates", [
    ("abo", 2 * 21, 2 * 2, {"abo_locate", "abo_revise_step", "abo_demonstration"}),
    ("abo-ablation", 2 * 5, 2 * 2, {"abo_locate", "abo_revise_step"}),
])
def test_projection_counts_localisation_revisions_demonstrations_and_repairs(name, calls, candidates, templates):
    plan = METHODS[name].projected(METHODS[name].params, beam=2, initial=False, n_dev=4)
    assert (plan.calls, plan.candidates, plan.reads_errors) == (calls, candidates, True)
    assert {a.template for a in plan.asks if a.calls} == templates



def test_only_behaviour_prompts_have_their_train_batch_scored():
    """ABO diagnoses the errors of prompts with a procedure; the baseline in the beam gets new procedures
    written from the task alone, so its train batch is never sent to the target."""
    ctx, _ = abo_context(make_reply(), revisions=1, demos=0)
    state = run_round(ctx)
    assert [n.candidate.origin for n in state.nodes if n.round == 0] == ["baseline", "procedure"], "both in the beam of 2"
    train_questions = [f"Q: {d['input']}\nA:" for d in ctx.task.docs("train")]
    on_train = [p for p in ctx.task.counter.inner.seen if any(q in p for q in train_questions)]
    assert on_train and all(p.endswith("A: Step 1:") for p in on_train), "only the procedure prompt ran on train"


COPYING = ("<procedure>1. List all the fruits, snakes, mice, cauliflowers, and goats.\n2. Count them.\n"
           "3. Add the counts.</procedure>")


@pytest.mark.parametrize("no_copy", [True, False])
def test_a_procedure_copying_the_training_questions_is_rejected_or_flagged(no_copy):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    from lm_eval_abo.tasks.synthetic import CATEGORIES

    questions = " ".join(bridge.question(d) for d in bridge.docs("train"))
    objects = [plural for items in CATEGORIES.values() for _, plural in items if f" {plural}" in questions][:4]
    copying = f"<procedure>1. List all the {', '.join(objects)}.\n2. Count them.\n3. Add the counts.</procedure>"
    ctx, _ = abo_context(make_reply(procedure=copying), demos=0)
    state = run_round(ctx, rounds=0, no_copy=no_copy)
    assert len(objects) >= 3, objects
    if no_copy:
        assert [n.candidate.origin for n in state.nodes] == ["baseline"]
        [dropped] = state.trace[0].dropped
        assert dropped.reason.startswith("copies training content: names the training questions'")
        heading = Heading("abo", "abo_object_counting_synth", "m", "", "o", 0, 2)
        report = run_report(heading, SearchResult.from_state(state), bridge.docs("dev"), bridge.metric_key)
        assert f"Rejected before scoring:\n\n- `{dropped.key}` (procedure): {dropped.reason}" in report
    else:
        [procedure] = [n for n in state.nodes if n.candidate.origin == "procedure"]
        assert procedure.candidate.notes["copies"].startswith("names the training questions'")
    general = "<procedure>1. Find the kind of thing the question asks about.\n2. Count each item of that kind.\n3. Add.</procedure>"
    ctx, _ = abo_context(make_reply(procedure=general), demos=0)
    state = run_round(ctx, rounds=0)
    assert [n.candidate.origin for n in state.nodes] == ["baseline", "procedure"], "a general procedure is kept"


def test_the_step_check_asks_more_than_the_labels():
    steps = ["List the items with counts.", "Keep the asked kind.", "Add the counts."]
    good = "Step 1: apple (1), cat (2).\nStep 2: only animals: cat (2).\nStep 3: 2. So the answer is 2."
    assert step_check(good, steps) == (good.index("Step 3:"), None)
    assert step_check("Step 1: apple (1).\nStep 3: 1. So the answer is 1.", steps) == (None, "steps"), "a label missing"
    empty = "Step 1: apple (1).\nStep 2:\nStep 3: 1. So the answer is 1."
    assert step_check(empty, steps) == (None, "empty_step"), "step 2 has no text"
    echoed = "Step 1: List the items with counts.\nStep 2: cat (2).\nStep 3: 2. So the answer is 2."
    assert step_check(echoed, steps) == (None, "empty_step"), "step 1 only repeats the step"
    off = "Step 1: apple (1), cat (2).\nStep 2: add the counts: 3.\nStep 3: 3. So the answer is 3."
    assert step_check(off, steps) == (None, "off_step"), "step 2's text does step 3's work"
    own = "Step 1: apple (1), cat (2).\nStep 2: keep the cat, add nothing yet.\nStep 3: 2. So the answer is 2."
    assert step_check(own, steps)[1] is None, "a word of its own step: it does that step"


def test_demonstrations_written_with_the_answer_shown_are_counted_apart():
    """A solver right without the answer exactly on the examples whose gold answer is even; with it, always."""
    ctx, _ = abo_context(lambda m: "?", demos=8, demo_attempts=8)
    golds = {ctx.task.question(d): ctx.task.gold(d) for d in ctx.task.docs("train")}

    def reply(messages):
        text = messages[0]["content"]
        if "<procedure>" in text:
            return make_reply()(messages)
        question = next(q for q in golds if q in text)
        answer = golds[question] if gold(text) or int(golds[question]) % 2 == 0 else "999"
        return f"<solution>Step 1: apple (1).\nStep 2: kept.\nStep 3: sum. So the answer is {answer}.</solution>"

    ctx, llm = abo_context(reply, demos=8, demo_attempts=8)
    [candidate] = METHODS["abo"].initial(ctx, beam=1).candidates
    even = sum(int(g) % 2 == 0 for g in golds.values())
    assert 0 < even < 8, "the data has both"
    assert candidate.notes["demos_verified"] == {
        "tried": 8, "without_answer": {"asked": 8, "verified": even, "answer": 8 - even},
        "with_answer": {"asked": 8 - even, "verified": 8 - even}, "kept": 8, "kept_with_answer": 8 - even}
    assert len(llm.prompts_sent("correct final answer is")) == 8 - even, "only the failed ones are asked with it"


def test_a_demonstration_with_an_empty_step_is_not_kept():
    def reply(messages):
        text = messages[0]["content"]
        if "<solution>" in text:
            return f"<solution>Step 1: apple (1).\nStep 2:\nStep 3: sum. So the answer is {gold(text) or 999}.</solution>"
        return make_reply()(messages)

    ctx, _ = abo_context(reply, demos=2, demo_attempts=2)
    [dropped] = METHODS["abo"].initial(ctx, beam=1).dropped
    assert "'with_answer': {'asked': 2, 'empty_step': 2}" in dropped.reason


def numbered_revisions(located="<step>2</step><kind>wrong</kind><why>Wrong count.</why>"):
    """make_reply's procedure and demonstrations; every revision different (numbered) and naming the errors it saw."""
    written = []

    def reply(messages):
        text = messages[0]["content"]
        if "<procedure>" in text and "complete revised procedure" in text:
            written.append(text.count("Correct answer:"))
            return f"<procedure>1. List only the asked kind, revision {len(written)}.\n2. Add their counts.</procedure>"
        if "<steps>" in text:
            written.append(1)
            return f"<steps>1. Count the asked kind again, revision {len(written)}.</steps>"
        if "<step>" in text and "first" in text:
            return located
        return make_reply()(messages)

    return reply


@pytest.mark.parametrize("localise", [1, 0])
def test_without_localisation_as_many_whole_procedure_revisions_as_localisation_makes_repairs(localise):
    ctx, llm = abo_context(numbered_revisions(), revisions=3, max_errors=3, demos=1, localise=localise)
    state = run_round(ctx)
    [behaviour] = [n for n in state.nodes if n.round == 0 and n.prompt.procedure]
    children = [n for n in state.nodes if n.candidate.parent == behaviour.key]
    assert len(children) == 3, "3 repairs either way"
    if localise:  # step 2 (wrong: no demonstration repair), then the whole procedure twice
        assert [n.candidate.notes["revised_step"] for n in children] == [2, None, None]
    else:
        assert [n.candidate.notes["revised_step"] for n in children] == [None, None, None]
        shown = [text.count("Correct answer:") for text in llm.prompts_sent("complete revised procedure")]
        assert shown == [1, 1, 1], "3 errors dealt out: each revision sees its own"
