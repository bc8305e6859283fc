"""The bridge to lm-eval, with a rule-based stand-in target (the real model is tested elsewhere)."""

import pytest
from conftest import make_bridge, rule_lm

from lm_eval_abo.artifact.prompt import Prompt


@pytest.fixture
def bridge():
    return make_bridge(rule_lm(), abo_n_train=6, abo_n_dev=5)


def test_candidates_are_scored_by_the_tasks_own_filter_and_metric(bridge):
    good, bad = Prompt(instruction="magic words"), Prompt(instruction="plain words")
    scores = bridge.score([good, bad], "dev", [0, 1, 2])
    assert [s.value for s in scores] == [1.0, 0.0] and scores[0].n == 3
    sample = scores[0].samples[0]
    assert sample.prompt.startswith("magic words") and sample.answer == sample.target == bridge.docs("dev")[0]["target"]
    assert [s.correct for s in scores[1].samples] == [False] * 3 and scores[1].errors() == scores[1].samples
    assert bridge.metric_key == "exact_match,answer" and bridge.higher_is_better


def test_all_candidates_go_in_one_pass_and_nothing_is_scored_twice(bridge):
    prompts = [Prompt(instruction=f"magic {i}") for i in range(3)]
    bridge.score(prompts, "dev", [0, 1])
    assert bridge.target_requests == 6
    bridge.score(prompts + [Prompt(instruction="new")], "dev", [0, 1, 2])
    assert bridge.target_requests == 6 + 3 + 3, "only the new prompt and the new example reach the model"
    bridge.score(prompts, "train", [0])
    assert bridge.target_requests == 12 + 3, "another split is another example"


def test_the_test_split_is_out_of_reach_of_the_search(bridge):
    with pytest.raises(ValueError, match="test split"):
        bridge.score([Prompt()], "test", [0])


def test_check_applies_the_tasks_filter_and_metric_to_any_text(bridge):
    docs = bridge.docs("train")[:3]
    texts = [f"Step 1: ... So the answer is {docs[0]['target']}.", "So the answer is 999.", "no final answer"]
    assert bridge.check(texts, docs) == [(docs[0]["target"], 1.0), ("999", 0.0), ("[invalid]", 0.0)]


def test_docs_are_the_split_rows_without_prompt_fields(bridge):
    rows = bridge.docs("train")
    assert len(rows) == 6 and set(rows[0]) == {"id", "input", "target"}
    assert bridge.question(rows[0]) == rows[0]["input"]
