"""The bridge's samples, aggregation and answer probing on a stand-in target that answers exactly one dev
question right, every expected value worked out by hand."""

import pytest
from conftest import make_bridge, rule_lm, write_multiple_choice_task

from lm_eval_abo.artifact.prompt import Prompt


@pytest.fixture
def scored():  # per test: mutmut maps the functions a test calls, its fixtures' setup included, to that test
    first = make_bridge(rule_lm(), abo_n_train=6, abo_n_dev=5)
    question = first.question(first.docs("dev")[0])
    bridge = make_bridge(rule_lm(keyword=question), abo_n_train=6, abo_n_dev=5)  # right on dev document 0 only
    [score] = bridge.score([Prompt()], "dev", [2, 0, 1])
    return bridge, score


def test_one_right_of_three_is_a_third_with_its_standard_error(scored):
    _, score = scored
    # values 1, 0, 0: mean 1/3; sample standard deviation sqrt(((2/3)**2 + 2 * (1/3)**2) / 2) = sqrt(1/3),
    # over sqrt(3): 1/3
    assert (score.n, score.value) == (3, pytest.approx(1 / 3)) and score.stderr == pytest.approx(1 / 3)
    assert [s.correct for s in score.samples] == [True, False, False] and score.errors() == score.samples[1:]


def test_a_sample_is_the_reply_as_sent_and_as_the_filter_read_it(scored):
    bridge, score = scored
    docs = bridge.docs("dev")
    right, wrong = score.samples[0], score.samples[1]
    assert (right.index, right.id, right.target, right.score) == (0, str(docs[0]["id"]), docs[0]["target"], 1.0)
    assert (right.output, right.answer) == (f" So the answer is {docs[0]['target']}.", docs[0]["target"])
    assert (wrong.index, wrong.id, wrong.output, wrong.answer, wrong.score) == \
        (1, str(docs[1]["id"]), " I do not know.", "[invalid]", 0.0)
    assert bridge.question(docs[0]) in right.prompt and bridge.question(docs[1]) in wrong.prompt


def test_a_reply_the_filter_read_nothing_from_is_unread(scored):
    bridge, score = scored
    assert bridge.unread(score.samples) == [False, True, True] and bridge.unread([]) == []


def test_without_a_metric_check_returns_the_answers_only(scored):
    bridge, _ = scored
    docs = bridge.docs("train")[:2]
    assert bridge.check(["So the answer is 4.", "nothing"], docs, metric=False) == [("4", 0.0), ("[invalid]", 0.0)]


def test_the_answer_format_is_found_on_the_tasks_filter():
    probe = make_bridge(rule_lm(), abo_n_train=6, abo_n_dev=5)
    probe.default_prompt, probe._answer_format = Prompt(), None  # a baseline that does not say how to answer
    # the task's filter reads "the answer is <number>": the first phrasing tried, "So the answer is {}.", passes
    assert probe.answer_format == 'End your answer with "So the answer is <answer>.".'


def test_a_capped_pass_is_checked_against_the_budget_for_the_requests_it_still_needs():
    from lm_eval_abo.cost.ledger import Budget, BudgetExhausted, Caps, Ledger, Usage
    from lm_eval_abo.cost.target import CountingLM

    bridge = make_bridge(rule_lm(), abo_n_train=6, abo_n_dev=5)
    one = Usage(calls=1, prompt_tokens=10)  # the projection's request, before any is measured
    bridge.attach(CountingLM(rule_lm()), Budget(Ledger(), Caps(max_target_tokens=59), per_request=one))
    prompts = [Prompt(instruction="a"), Prompt(instruction="b")]
    with pytest.raises(BudgetExhausted, match="about 60 for the next 6 target requests"):
        bridge.score(prompts, "dev", [0, 1, 2])  # 2 prompts x 3 documents x 10 tokens
    assert bridge.target_requests == 0
    bridge.score(prompts, "dev", [0, 1, 2], capped=False)  # the test evaluation is not capped
    assert bridge.target_requests == 6
    bridge.attach(bridge.counter, Budget(Ledger(), Caps(max_target_tokens=20), per_request=one))
    bridge.score(prompts, "dev", [0, 1, 2, 3])  # only document 3 is new: 2 requests, 20 tokens
    assert bridge.target_requests == 8


def test_a_multiple_choice_reply_is_the_option_ranked_first(tmp_path):
    from lm_eval.api.model import LM

    class PrefersBlue(LM):
        """Ranks " blue" first whatever the question."""

        def loglikelihood(self, requests, disable_tqdm=False):
            return [(0.0 if r.args[1].strip() == "blue" else -5.0, False) for r in requests]

        def generate_until(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

    folder = write_multiple_choice_task(tmp_path / "tasks")
    bridge = make_bridge(PrefersBlue(), task="my_choice", include_path=[folder],
                         harness={"train_limit": 4, "dev_limit": 8})
    docs = bridge.docs("dev")
    [score] = bridge.score([Prompt()], "dev", list(range(8)))
    assert [s.output for s in score.samples] == ["blue"] * 8 == [s.answer for s in score.samples]
    sky = [d["thing"] == "the sky" for d in docs]
    assert [s.correct for s in score.samples] == sky and score.value == pytest.approx(sum(sky) / 8)
    assert bridge.target_requests == 8 * 8, "one loglikelihood request per option"
    assert bridge.unread(score.samples) == [False] * 8 and bridge.answer_format == ""
    assert [s.id for s in score.samples] == [f"test:{bridge.splits.dev.indices[i]}" for i in range(8)]
    assert [s.doc for s in score.samples] == docs
