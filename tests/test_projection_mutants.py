"""The projection's arithmetic on hand-made numbers, and a projected apo run's prices, per-request use and
test evaluation worked out by hand from the task's own dev prompts (as tests/test_ledger.py's projection
test counts them)."""

import pytest
from conftest import make_bridge, rule_lm
from promptfoo_cli import judged_task

from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Caps, Ledger, Price, Usage
from lm_eval_abo.infra import metaprompts
from lm_eval_abo.run.projection import REPLY_TOKENS, PerDoc, Projection, _variables, priced, project
from lm_eval_abo.run.session import plan_session, prices_of, resolve_run

PRICE = Price(2.0, 10.0, "test")  # US dollars per million tokens


def test_a_documents_use_times_documents_at_a_price():
    usage = PerDoc(requests=1.5, prompt=100.25, completion=20.5).times(4, PRICE, estimated=True)
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (6, 401, 82, True)
    assert usage.cost_usd == pytest.approx((401 * 2.0 + 82 * 10.0) / 1e6) and usage.cost_known is True
    free = PerDoc(1, 10, 5).times(2, None, estimated=False)
    assert (free.cost_usd, free.cost_known, free.estimated, free.calls) == (0.0, False, False, 2)
    assert priced(Usage(calls=3, prompt_tokens=1_000_000), PRICE) == Usage(calls=3, prompt_tokens=1_000_000,
                                                                           cost_usd=2.0, cost_known=True)


def projection(rounds_cost, test_cost, calls=0):
    return Projection(rounds=[Ledger(optimizer=Usage(cost_usd=c)) for c in rounds_cost],
                      test=Ledger(target=Usage(cost_usd=test_cost)), per_request=Usage(calls=1), counted="estimated",
                      prices={}, grader_per_request=Usage(calls=calls, cost_usd=0.001 * calls))


def test_the_last_round_the_caps_leave_room_for_with_the_test_evaluation():
    plan = projection([0.10, 0.20, 0.30], 0.05)  # running totals with the test: 0.15, 0.35, 0.65
    assert plan.last_round_within(Caps(max_cost=0.35)) == 1
    assert plan.last_round_within(Caps(max_cost=1.0)) == 2
    assert plan.last_round_within(Caps(max_cost=0.14)) is None, "not even round 0"
    assert projection([0.10, 0.01], 0.05).last_round_within(Caps(max_cost=0.15)) == 0, \
        "a cheap round after one past the cap does not count"


def test_a_projection_as_a_dict_has_the_grader_only_where_there_is_one():
    d = projection([0.1], 0.05).to_dict()
    assert d["target_tokens"] == "estimated" and "grader_per_request" not in d
    assert d["total"]["cost_usd"] == pytest.approx(0.15)
    graded = projection([0.1], 0.05, calls=2).to_dict()
    assert graded["grader_per_request"]["calls"] == 2 and graded["grader_per_request"]["cost_usd"] == 0.002


def apo_projection(reply_cap=None, **changes):
    cfg, method, params = resolve_run(OptimizeConfig(**{
        "task": "abo_object_counting_synth", "method": "apo", "model": "local-completions",
        "model_args": "model=fake,tokenizer_backend=None", "rounds": 1, "beam": 2, "train_limit": 6, "dev_limit": 4,
        "test_limit": 5, "minibatch": 3, "metadata": {"abo_n_train": 8, "abo_n_dev": 4, "abo_n_test": 5}, **changes}))
    return project(plan_session(cfg), method, params, prices_of(cfg), cfg.optimizer, reply_cap)


def dev_prompt_tokens() -> int:
    """The baseline's 4 dev prompts, estimated at 4 characters a token as the projection does without a
    tokenizer."""
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4, abo_n_test=5)
    [score] = bridge.score([bridge.default_prompt], "dev", list(range(4)))
    return sum(-(-len(s.prompt) // 4) for s in score.samples)


def test_a_projected_run_is_priced_per_request_and_tested_with_the_baseline_and_the_best():
    plan = apo_projection(target_price=(2.0, 10.0), optimizer_price=(1.0, 4.0))
    baseline = dev_prompt_tokens()
    candidate = baseline + 4 * 60  # 4 dev prompts, each with an instruction the size the paraphrase meta-prompt asks
    # one target request of a candidate: its mean prompt, a reply at the task's max_gen_toks (160), priced
    assert (plan.per_request.calls, plan.per_request.prompt_tokens, plan.per_request.completion_tokens) == \
        (1, round(candidate / 4), 160)
    assert plan.per_request.cost_usd == pytest.approx((round(candidate / 4) * 2.0 + 160 * 10.0) / 1e6)
    # the test evaluation: the baseline and the best prompt on the 5 test documents, nothing of the optimizer
    test = plan.test.target
    assert (test.calls, test.completion_tokens, plan.test.optimizer.calls) == (10, 10 * 160, 0)
    assert test.prompt_tokens == round(baseline / 4 * 5) + round(candidate / 4 * 5)
    assert test.cost_usd == pytest.approx((test.prompt_tokens * 2.0 + test.completion_tokens * 10.0) / 1e6)
    for ledger in plan.rounds:
        assert ledger.optimizer.cost_usd == pytest.approx(
            (ledger.optimizer.prompt_tokens * 1.0 + ledger.optimizer.completion_tokens * 4.0) / 1e6)
        assert ledger.target.cost_known and ledger.optimizer.cost_known and ledger.grader == Usage()
    assert plan.counted == "estimated at 4 characters a token" and test.estimated
    assert plan.prices["target"].startswith("$2 in / $10 out")


def test_the_optimizers_replies_are_counted_at_the_size_each_meta_prompt_asks_or_the_cap():
    # round 0 of apo: 2 initial instructions, each reply 80 tokens (initial_instruction); a cap of 50 cuts them
    assert apo_projection().rounds[0].optimizer.completion_tokens == 2 * 80
    assert apo_projection(reply_cap=50).rounds[0].optimizer.completion_tokens == 2 * 50


def test_a_reply_cap_also_caps_what_a_candidate_writes_into_its_prompt():
    capped = apo_projection(reply_cap=50)
    assert capped.per_request.prompt_tokens == round((dev_prompt_tokens() + 4 * 50) / 4)
    assert all(r.target.estimated for r in capped.rounds), "every round's target tokens are estimated"
    d = capped.to_dict()
    assert [r["target"]["calls"] for r in d["rounds"]] == [r.target.calls for r in capped.rounds]
    assert d["test"]["target"]["calls"] == 10 and d["per_request"]["calls"] == 1


def test_a_graded_tasks_grader_is_projected_for_every_target_request(tmp_path):

    from lm_eval_abo.promptfoo.hooks import REPLY_TOKENS, projected_grading

    cfg, method, params = resolve_run(OptimizeConfig(
        task="judged", include_path=[judged_task(tmp_path)], method="ape", model="local-completions",
        model_args="model=fake,tokenizer_backend=None", optimizer="openai/fake", optimizer_price=(1.0, 2.0), rounds=1,
        beam=1, method_args={"paraphrases": 1}))
    session = plan_session(cfg)
    plan = project(session, method, params, prices_of(cfg), cfg.optimizer, None)
    # one llm-rubric assertion a document: one grader call per target request, in every round and on test
    for ledger in [*plan.rounds, plan.test]:
        assert ledger.grader.calls == ledger.target.calls > 0
        assert ledger.grader.completion_tokens == REPLY_TOKENS["llm-rubric"] * ledger.grader.calls
        assert ledger.grader.cost_usd == pytest.approx(
            (ledger.grader.prompt_tokens * 1.0 + ledger.grader.completion_tokens * 2.0) / 1e6)
    assert plan.test.grader.calls == 2 * session.n_test, "the baseline and the best prompt on test"
    # per target request: the grader's use on the dev documents (each reply at the task's max_gen_toks, 256
    # where the task does not say), divided by their number
    bridge = session.bridge
    docs = [bridge.docs("dev")[i] for i in session.dev_indices]
    reply = int((bridge.reference.config.generation_kwargs or {}).get("max_gen_toks", 256))
    dev = projected_grading(docs, reply, "openai/fake", Price(1.0, 2.0, "--optimizer-price"), {})
    per = plan.grader_per_request
    assert (per.calls, per.prompt_tokens, per.completion_tokens) == (1, round(dev.prompt_tokens / len(docs)), 60)
    assert plan.to_dict()["grader_per_request"]["calls"] == 1


@pytest.fixture(scope="module")
def bridge():
    return make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4, abo_n_test=5)


SHOWS = {"examples": 2, "errors": 3, "history": 2, "trajectory": 4, "procedure": 5, "n": 2}


@pytest.mark.parametrize("template", sorted(REPLY_TOKENS))
def test_every_meta_prompt_the_projection_counts_renders_with_its_stand_in_values(bridge, template):
    """The meta-prompts render with StrictUndefined: a value missing or misnamed stops the projection."""
    messages = metaprompts.render(template, **_variables(SHOWS, bridge))
    assert messages and all(m["content"].strip() for m in messages)


def test_the_stand_in_values_are_the_tasks_training_examples_in_lists_as_long_as_asked(bridge):
    values = _variables(SHOWS, bridge)
    train = bridge.docs("train")
    examples = [{"question": bridge.question(d), "target": bridge.gold(d)} for d in train[:3]]
    assert values["examples"] == examples[:2]
    assert [{k: e[k] for k in ("question", "target", "answer")} for e in values["errors"]] == \
        [{**e, "answer": e["target"]} for e in examples]
    assert all(e["output"].startswith(e["question"] + " ") and len(e["output"]) <= 500 for e in values["errors"])
    assert (len(values["history"]), len(values["trajectory"]), len(values["procedure"]), len(values["analyses"])) == \
        (2, 4, 5, 3)
    assert values["instruction"] == (bridge.default_prompt.instruction or bridge.task_description)
    assert (values["question"], values["target"], values["n"]) == (examples[0]["question"], examples[0]["target"], 2)
    none = _variables({}, bridge)
    assert (none["examples"], none["errors"], none["history"], none["n"], len(none["procedure"])) == ([], [], [], 1, 1)
    assert none["answer_format"] == (bridge.answer_format or "End with the answer.")
