"""The two studies of `lm-eval-abo diagnose` on scripted optimizer replies and rule-based targets, scored
through the real lm-eval machinery (the same studies on the embedded models: test_diagnose.py)."""

import math
import random
import re
from dataclasses import replace

import numpy
import pytest
from conftest import FakeLM, ScriptedLLM, make_bridge, make_context, rule_lm
from scipy.stats import fisher_exact

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.infra import stats
from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.base import Candidate
from lm_eval_abo.scoring import Sample
from lm_eval_abo.studies import sets
from lm_eval_abo.studies.refinement import guidance, refine, refinement_markdown
from lm_eval_abo.studies.reflection import reflect, reflection_markdown, vector_space

WORDS = "count items list carefully objects total each category number answer group kinds sum".split()
OTHER_ERRORS = [{"question": f"Navigate {i} steps?", "output": "No idea.", "answer": "[invalid]", "target": "Yes"}
                for i in range(4)]


def sampler(llm: ScriptedLLM, named: str | None = None):
    """An optimizer that samples: a different reflection per call at a temperature above 0, one fixed text at 0.
    With `named`, it writes that reason when every example shown is exactly one below its correct answer."""
    rng = random.Random(0)

    def reply(messages):
        text = messages[0]["content"]
        shown = re.findall(r"Answer extracted from it: (\S+)\nCorrect answer: (\S+)", text)
        if named and shown and all(a.lstrip("-").isdigit() and int(t) == int(a) + 1 for a, t in shown):
            return f"<reason>{named}</reason>"
        if not llm.temperatures[-1]:
            return "<reason>The instruction is vague about the items.</reason>"
        return "<reason>" + " ".join(rng.sample(WORDS, 5)) + ".</reason>"

    return reply


def half_right_lm() -> FakeLM:
    """A target that answers right exactly on the documents whose gold answer is even."""
    return FakeLM(lambda r: f" So the answer is {r.doc['target']}." if str(r.doc["target"]).isdigit()
                  and int(r.doc["target"]) % 2 == 0 else " I lost count.")


def study(lm=None, task="abo_object_counting_synth", named=None, method_params=None):
    bridge = make_bridge(lm or rule_lm(), task=task, abo_n_train=12, abo_n_dev=4)
    llm = ScriptedLLM(None)
    llm.reply = sampler(llm, named)
    ctx = make_context(bridge, llm, train_pool=range(12), sampling_temperature=1.0)
    [train] = bridge.score([bridge.default_prompt], "train", list(range(12)))
    return ctx, llm, train


def test_reflections_are_sampled_at_the_study_temperature_and_differ():
    ctx, llm, train = study()
    result = reflect(ctx, ctx.task.default_prompt, train.samples, OTHER_ERRORS, samples=3, k=2, temperature=1.0)
    assert set(llm.temperatures) == {1.0}, "every reflection is asked at the study temperature"
    real = result["reflections"]["real_a"]
    assert len(real) == 3 and len({r["text"] for r in real}) == 3, "the samples are different texts"
    assert all(r["temperature"] == 1.0 for r in real) and len({r["seed"] for r in real}) == 3
    assert {c["seed"] for c in result["calls"]} >= {r["seed"] for rs in result["reflections"].values() for r in rs}
    assert result["draw_similarity"]["real_a"] < 1.0

    ctx, llm, train = study()
    greedy = reflect(ctx, ctx.task.default_prompt, train.samples, OTHER_ERRORS, samples=3, k=2, temperature=0.0)
    assert set(llm.temperatures) == {0.0} and greedy["temperature"] == 0.0
    assert greedy["draw_similarity"]["real_a"] == pytest.approx(1.0), "one text three times: what greedy decoding gives"


def test_the_two_real_samples_are_disjoint_and_every_set_is_compared_with_real_b():
    ctx, _, train = study()
    result = reflect(ctx, ctx.task.default_prompt, train.samples, OTHER_ERRORS, samples=2, k=3, temperature=1.0)
    a, b = ({e["question"] for e in result["error_sets"][name]} for name in ("real_a", "real_b"))
    assert len(a) == len(b) == 3 and not a & b
    assert [r["set"] for r in result["rows"]] == ["real_a", "wrong_labels", "correct_as_errors", "other_task", "planted_cause"]
    for row in result["rows"][1:]:
        assert row["sensitivity"] == pytest.approx(result["within_real_similarity"] - row["similarity_to_real"])
        assert 0 <= row["noise_floor"] and 0 < row["p_value"] <= 1


def tfidf_cosines(texts: list[str]) -> list[list[float]]:
    """TF-IDF cosine similarities from the published formula, by hand: words of 2+ word characters, lower-cased;
    weight = count x (ln((1 + n) / (1 + document frequency)) + 1); each vector scaled to length 1."""
    words = [re.findall(r"\b\w\w+\b", t.lower()) for t in texts]
    df = {w: sum(w in ws for ws in words) for w in {w for ws in words for w in ws}}
    vectors = []
    for ws in words:
        v = {w: ws.count(w) * (math.log((1 + len(texts)) / (1 + df[w])) + 1) for w in set(ws)}
        length = math.sqrt(sum(x * x for x in v.values()))
        vectors.append({w: x / length for w, x in v.items()})
    return [[sum(x * v.get(w, 0.0) for w, x in u.items()) for v in vectors] for u in vectors]


def test_tfidf_by_hand_on_two_small_texts():
    # "a" is too short to count; "cat" is in both texts (idf 1), "dog" in one (idf ln(3/2) + 1)
    idf = math.log(3 / 2) + 1
    assert tfidf_cosines(["cat dog a", "cat"])[0][1] == pytest.approx(1 / math.sqrt(1 + idf**2))
    assert vector_space(["cat dog a", "cat"])[0][1] == pytest.approx(1 / math.sqrt(1 + idf**2))


def test_every_similarity_comes_from_one_vector_space_fitted_once():
    ctx, _, train = study()
    result = reflect(ctx, ctx.task.default_prompt, train.samples, OTHER_ERRORS, samples=3, k=2, temperature=1.0)
    texts = [r["text"] for name in result["reflections"] for r in result["reflections"][name]]
    one = tfidf_cosines(texts)
    assert numpy.allclose(result["similarities"]["matrix"], one)
    order = result["similarities"]["order"]
    a = [i for i, name in enumerate(order) if name == "real_a"]
    b = [i for i, name in enumerate(order) if name == "real_b"]
    assert len(a) == len(b) == 3
    within = sum(one[i][j] for i in a for j in b) / (len(a) * len(b))
    assert result["within_real_similarity"] == pytest.approx(within)
    apart = tfidf_cosines([texts[i] for i in a + b])  # a space of real_a and real_b only
    apart_within = sum(apart[i][j] for i in range(len(a)) for j in range(len(a), len(a) + len(b))) / (len(a) * len(b))
    assert within != pytest.approx(apart_within), "a space fitted on fewer texts gives other similarities"
    assert vector_space([]) == [] and vector_space(["", ""]) == [[0.0, 0.0], [0.0, 0.0]]


def test_wrong_labels_are_never_the_true_gold_answer():
    for task in ("abo_object_counting_synth", "abo_navigate_synth"):
        ctx, _, train = study(task=task)
        errors = [ctx.error(s) for s in train.errors()]
        shown = sets.wrong_labels(ctx, errors, [s.target for s in train.samples])
        assert len(shown) == len(errors)
        for e, original in zip(shown, errors):
            assert e["true_target"] == original["target"] and not sets.same_answer(e["target"], original["target"])
            assert not sets.same_answer(e["target"], e["answer"]), "read as an error: the target's answer is not it"
    # a two-label task where the target answered the other label: the only wrong label is the target's own
    ctx, _, _ = study(task="abo_navigate_synth")
    errors = [{"question": "q", "output": "So the answer is No.", "answer": "No", "target": "Yes"},
              {"question": "r", "output": "So the answer is yes.", "answer": "yes", "target": "no"}]
    shown = sets.wrong_labels(ctx, errors, ["Yes", "No", "yes", "no"])
    assert [e["target"].lower() for e in shown] == ["no", "yes"]
    numbers = [{"question": str(g), "output": "", "answer": "[invalid]", "target": str(g)} for g in range(30)]
    assert all(not sets.same_answer(e["target"], e["true_target"]) for e in sets.wrong_labels(ctx, numbers, ["3"]))


def test_correct_answers_shown_as_errors_really_are_correct():
    for lm in (half_right_lm(), rule_lm()):  # some right answers of its own (then written ones), none at all
        ctx, _, train = study(lm=lm)
        shown = sets.correct_as_errors(ctx, train.samples, 4)
        assert len(shown) == 4
        docs = {ctx.task.question(d): d for d in ctx.task.docs("train")}
        checks = ctx.task.check([e["output"] for e in shown], [docs[e["question"]] for e in shown])
        assert all(value == 1.0 for _, value in checks), "the task's filter and metric count every one of them right"
        own = [e for e in shown if not e.get("written")]  # the target's own right replies come first
        assert len(own) == min(4, len([s for s in train.samples if s.correct])) and shown[: len(own)] == own


def test_planted_errors_have_their_cause_and_are_errors():
    ctx, _, train = study()
    cause, shown = sets.planted_errors(ctx, train.samples, 4)
    assert cause == "off_by_one" and len(shown) == 4
    assert all(int(e["answer"]) == int(e["target"]) - 1 for e in shown)
    docs = {ctx.task.question(d): d for d in ctx.task.docs("train")}
    checks = ctx.task.check([e["output"] for e in shown], [docs[e["question"]] for e in shown])
    assert [a for a, _ in checks] == [e["answer"] for e in shown] and all(v == 0.0 for _, v in checks)
    ctx, _, train = study(task="abo_navigate_synth")
    cause, shown = sets.planted_errors(ctx, train.samples, 4)
    assert cause == "cut_off" and len(shown) == 4  # no numeric answers: the documented fallback


def test_the_planted_cause_is_detected_when_named_and_not_when_not():
    ctx, _, train = study(named="The model is off by one: it undercounts every time.")
    result = reflect(ctx, ctx.task.default_prompt, train.samples, OTHER_ERRORS, samples=3, k=2, temperature=1.0)
    planted = result["planted"]
    assert planted["cause"] == "off_by_one" and planted["named"] == planted["reflections"] == 3
    assert planted["control_named"] == 0 and planted["control_reflections"] == 6
    assert planted["p_value"] == pytest.approx(fisher_exact([[3, 0], [0, 6]], alternative="greater").pvalue)
    assert "## Planted cause: off_by_one" in reflection_markdown({**result, "task": "t", "optimizer": "o", "seed": 1})

    ctx, _, train = study()  # an optimizer that never names it
    result = reflect(ctx, ctx.task.default_prompt, train.samples, OTHER_ERRORS, samples=3, k=2, temperature=1.0)
    assert result["planted"]["named"] == 0 and result["planted"]["p_value"] == 1.0
    assert sets.names_cause("off_by_one", "Each answer is one less than the right count.")
    assert not sets.names_cause("off_by_one", "The instruction does not ask to list each item one by one.")
    assert sets.names_cause("cut_off", "The reply doesn't finish; there is no final answer.")
    assert not sets.names_cause("cut_off", "The instruction is too vague about the options.")


def test_permutation_floor_and_fisher_on_known_values():
    floor, p = stats.permutation_test([1.0] * 4, [0.0] * 4)
    assert p == pytest.approx(2 / 70) and floor == pytest.approx(0.5)
    assert stats.permutation_test([0.3, 0.5], [0.4, 0.4])[1] == 1.0
    _, p = stats.permutation_test([1.0] * 40, [0.0] * 40, iterations=500)  # sampled splits
    assert p == pytest.approx(1 / 501)
    assert stats.fisher_greater(5, 6, 1, 8) == pytest.approx(fisher_exact([[5, 1], [1, 7]], alternative="greater").pvalue)


def refinement_replies():
    """A scripted optimizer for one APO round: numbered edits that say the magic word (the target then answers
    right), paraphrases of an edit that drop it, and a planted paraphrase of the parent."""
    edits, takes = iter(range(1, 100)), iter(range(1, 100))

    def reply(messages):
        text = messages[0]["content"]
        if "<reason>" in text:
            return "<reason>It never says the magic word.</reason>"
        if "improved instruction" in text:
            return f"<prompt>Say the magic word, then count (edit {next(edits)}).</prompt>"
        instruction = re.search(r"Instruction: (.*)", text).group(1)
        if "magic" in instruction:
            edit = re.search(r"edit \d+", instruction).group(0)
            return f"<prompt>Count, then say the word ({edit}).</prompt>"
        return f"<prompt>Count the things in the list, take {next(takes)}.</prompt>"  # a planted paraphrase of the parent

    return reply


def refined(**params):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=6)
    llm = ScriptedLLM(refinement_replies())
    ctx = make_context(bridge, llm, "apo", sampling_temperature=1.0, **params)
    parent = bridge.default_prompt
    [dev] = bridge.score([parent], "dev", list(range(6)))
    [train] = bridge.score([parent], "train", list(range(4)))
    return parent, refine(ctx, METHODS["apo"], parent, dev, train)


def test_refinement_scores_the_two_controls_beside_it_with_mcnemar_p_values():
    parent, result = refined(gradients=1, paraphrases=0)
    refinement, around, from_parent = result["rows"]
    assert (refinement["kind"], around["kind"], from_parent["kind"]) == ("refinement", "around_refinement", "from_parent")
    assert around["source"] == refinement["key"] and around["prompt"]["instruction"] == "Count, then say the word (edit 1)."
    assert from_parent["origin"] == "paraphrase" and from_parent["prompt"]["instruction"] == "Count the things in the list, take 1."
    assert from_parent["prompt"]["answer_format"] == parent.answer_format, "the paraphrase keeps the rest of the parent"
    assert (refinement["fixed"], refinement["broken"], from_parent["fixed"], from_parent["broken"]) == (6, 0, 0, 0)
    assert refinement["mcnemar_p"] == stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64) and from_parent["mcnemar_p"] == 1.0
    assert refinement["vs_parent"]["difference"] == 1.0 and refinement["vs_parent"]["interval"] == [1.0, 1.0]
    assert around["refinement_vs_this"]["difference"] == 1.0 and around["refinement_vs_this"]["mcnemar_p"] == pytest.approx(2 / 64)
    assert refinement["changed"] == 1.0 and from_parent["changed"] == 0.0 and refinement["answered"] == 1.0
    assert refinement["check"] == "new terms" and "magic" in refinement["guidance"]["terms"]
    assert refinement["followed"] == 0.0, "the target's replies never use the new guidance's words"
    assert result["mean"]["refinement"]["fix_rate"] == 1.0 and result["mean"]["from_parent"]["fix_rate"] == 0.0
    # per example every refinement is right and every control wrong: 6 of 6 for the refinements, sign p = 2 / 2**6
    for control in ("around_refinement", "from_parent"):
        found = result["kinds"][control]["refinements_vs_control"]
        assert found["difference"] == 1.0 and found["sign_p"] == pytest.approx(1 / 32)
    assert {(c["template"], c["temperature"]) for c in result["calls"]} == {
        ("apo_gradient", None), ("apo_edit", 1.0), ("paraphrase", 1.0)}
    assert all(isinstance(c["seed"], int) for c in result["calls"])
    markdown = refinement_markdown({**result, "task": "t", "method": "apo", "optimizer": "o", "seed": 1,
                                    "sampling_temperature": 1.0, "minibatch": [0, 1, 2, 3]})
    assert "| refinement |" in markdown and "| from_parent |" in markdown and "| around_refinement |" in markdown
    assert "McNemar p" in markdown and "## Each refinement against its paraphrase" in markdown


def test_a_planted_paraphrase_of_the_parent_is_never_a_refinement():
    # APO writes 2 edits, a paraphrase of each, and a paraphrase of the parent (a planted one); all 5 are kept
    parent, result = refined(gradients=2, paraphrases=1, max_expansion_factor=8)
    rows = {kind: [r for r in result["rows"] if r["kind"] == kind] for kind in ("refinement", "around_refinement", "from_parent")}
    assert sorted(r["prompt"]["instruction"] for r in rows["refinement"]) == [
        "Say the magic word, then count (edit 1).", "Say the magic word, then count (edit 2)."]
    assert all(r["origin"] == "edit" for r in rows["refinement"])
    assert result["left_out"] == {"paraphrases of the parent": 1, "paraphrases of refinements": 2}
    refinements = {r["key"]: r["prompt"]["instruction"] for r in rows["refinement"]}
    assert sorted(r["source"] for r in rows["around_refinement"]) == sorted(refinements), "one around each refinement"
    for r in rows["around_refinement"]:
        edit = re.search(r"edit \d", refinements[r["source"]]).group(0)
        assert r["origin"] == "paraphrase" and r["prompt"]["instruction"] == f"Count, then say the word ({edit})."
    assert len(rows["from_parent"]) == 2 and {r["source"] for r in rows["from_parent"]} == {Candidate(parent, "x").key}
    # APO's own paraphrase of the parent was take 1 (left out); the control's are takes 2 and 3
    assert [r["prompt"]["instruction"] for r in rows["from_parent"]] == [
        "Count the things in the list, take 2.", "Count the things in the list, take 3."]
    assert result["kinds"]["refinement"]["members"] == 2 and result["kinds"]["refinement"]["dev"] == 1.0


def reply_sample(i: int, output: str) -> Sample:
    return Sample(index=i, id=str(i), doc={"input": f"How many items in box {i}?"}, prompt="", output=output, answer="",
                  target="3", score=0.0, correct=False)


def test_guidance_is_checked_per_numbered_step():
    ctx, _, _ = study()
    parent = Prompt(instruction="Follow the steps.", procedure=("List the items.", "Count them.", "Answer."),
                    answer_prefix="Step 1:")
    candidate = replace(parent, procedure=("List the items.", "Count each item once, aloud.", "Answer."))
    old = {0: reply_sample(0, " apples"), 1: reply_sample(1, " pears")}
    new = {0: reply_sample(0, " apple, pear\nStep 2: one, two\nStep 3: So the answer is 2."),
           1: reply_sample(1, " pear. So 1.")}
    found = guidance(ctx, parent, candidate, old, new)
    assert found["check"] == "step labels" and found["followed"] == 0.5
    assert [(s["step"], s["new"], s["labelled"]) for s in found["steps"]] == [(1, False, 1.0), (2, True, 0.5), (3, False, 0.5)]
    unchanged = guidance(ctx, parent, parent, old, old)
    assert unchanged["check"] is None and unchanged["followed"] is None


def test_the_reflection_command_asks_litellm_at_the_study_temperature_with_distinct_seeds(tmp_path):
    import json

    from fakeserver import FakeServer, reply, variant

    from lm_eval_abo.cli import build_parser
    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.infra.errors import AboError
    from lm_eval_abo.studies import reflection_study

    args = build_parser().parse_args(["diagnose", "reflection", "--task", "t", "--study-temperature", "0.7"])
    assert args.study_temperature == 0.7
    assert build_parser().parse_args(["diagnose", "reflection", "--task", "t"]).study_temperature == 1.0
    with FakeServer(default=lambda request: reply(f"<reason>{variant(request, 'Too vague')}</reason>")) as server:
        config = OptimizeConfig(task="abo_object_counting_synth", optimizer="openai/fake", dev_limit=2,
                                optimizer_args={"api_base": server.base_url, "api_key": "x"}, optimizer_cache=None,
                                output=str(tmp_path), metadata={"abo_n_test": 5})
        with pytest.raises(AboError, match="--samples of at least 2"):
            reflection_study(config, samples=1, lm=rule_lm())
        result = reflection_study(config, samples=2, k=2, temperature=0.7, out=lambda line: None, lm=rule_lm())
        bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    assert {b["temperature"] for b in bodies} == {0.7} and len({b["seed"] for b in bodies}) == len(bodies) == 12
    saved = json.loads((tmp_path / "abo_object_counting_synth" / "diagnose" / "reflection.json").read_text())
    assert saved["temperature"] == 0.7 and saved["seed"] == 1234 and saved["other_task"] == "abo_navigate_synth"
    assert sorted(r["seed"] for rs in saved["reflections"].values() for r in rs) == sorted(b["seed"] for b in bodies)
    assert saved["train_examples"] == 16 == result["train_examples"], "the preset's sizes (small: train 16) are respected"
    assert "| planted_cause |" in (tmp_path / "abo_object_counting_synth" / "diagnose" / "reflection.md").read_text()
