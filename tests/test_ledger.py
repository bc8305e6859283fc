"""One ledger and one budget for both models, against a local OpenAI-compatible server that reports `usage`:
the target through lm-eval's `local-completions`, the optimizer through litellm, each at a set price."""

import pytest
from fakeserver import FakeServer, reply, variant

from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Budget, BudgetExhausted, Caps, Ledger, Usage
from lm_eval_abo.infra.files import read_json
from lm_eval_abo.run.optimize import optimize

TASK = "abo_object_counting_synth"
TARGET_PRICE, OPTIMIZER_PRICE = (3.0, 15.0), (1.0, 2.0)  # US dollars per million tokens, in and out


def serving():
    """A server for one run: the optimizer writes a new instruction at every call (numbered), the target
    answers every question in a dozen words."""
    calls = []

    def answer(request):
        if request.path.endswith("/chat/completions"):
            calls.append(request)
            return reply(f"<prompt>{variant(request)} Take care, number {len(calls)}.</prompt>")
        return reply(" Counting them one by one: there are three. So the answer is 3.")

    return FakeServer(answer)


@pytest.fixture
def server():
    with serving() as s:
        yield s


def config(server, folder, **changes) -> OptimizeConfig:
    settings = {
        "task": TASK, "method": "ape", "model": "local-completions",
        "model_args": f"model=fake,base_url={server.base_url}/completions,tokenizer_backend=None,"
                      "tokenized_requests=False,max_retries=1",
        "optimizer": "openai/fake", "optimizer_args": {"api_base": server.base_url, "api_key": "x"},
        "target_price": TARGET_PRICE, "optimizer_price": OPTIMIZER_PRICE, "rounds": 2, "beam": 1, "train_limit": 4,
        "dev_limit": 3, "test_limit": 3, "minibatch": 2, "method_args": {"paraphrases": 1}, "optimizer_cache": None,
        "concurrency": 1, "output": str(folder), "metadata": {"abo_n_train": 8, "abo_n_dev": 4, "abo_n_test": 4},
        "gen_kwargs": {"max_gen_toks": 16},  # about what the server answers: a projection close to the run
    }
    return OptimizeConfig(**{**settings, **changes})


def run(cfg: OptimizeConfig, lines: list | None = None) -> store.Artifact:
    return optimize(cfg, out=(lines if lines is not None else []).append).artifact_data


def dollars(requests, price) -> float:
    return sum(r.usage["prompt_tokens"] * price[0] + r.usage["completion_tokens"] * price[1] for r in requests) / 1e6


def sides(server) -> tuple[list, list]:
    return ([r for r in server.requests if r.path.endswith("/v1/completions")],
            [r for r in server.requests if r.path.endswith("/chat/completions")])


def test_the_ledger_holds_every_request_of_both_models_at_their_prices(server, tmp_path):
    usage = run(config(server, tmp_path)).usage
    target, optimizer = sides(server)
    assert usage["target"]["calls"] == len(target) > 0 and usage["optimizer"]["calls"] == len(optimizer) > 0
    for side, requests in (("target", target), ("optimizer", optimizer)):
        for kind in ("prompt_tokens", "completion_tokens"):
            assert usage[side][kind] == sum(r.usage[kind] for r in requests), "the server's own usage, summed"
        assert not usage[side]["estimated"] and usage[side]["cost_known"]
    assert usage["target"]["cost_usd"] == pytest.approx(dollars(target, TARGET_PRICE), rel=1e-12, abs=0)
    assert usage["optimizer"]["cost_usd"] == pytest.approx(dollars(optimizer, OPTIMIZER_PRICE), rel=1e-12, abs=0)
    assert usage["cost_usd"] == pytest.approx(dollars(target, TARGET_PRICE) + dollars(optimizer, OPTIMIZER_PRICE),
                                              rel=1e-12, abs=0)
    assert usage["prices"]["target"].startswith("$3 in / $15 out per million tokens (--target-price)")


def test_rounds_and_the_test_evaluation_add_up_to_the_run_and_stay_within_the_projection(server, tmp_path):
    artifact = run(config(server, tmp_path))
    usage, trace = artifact.usage, artifact.trace
    rounds = [Ledger.from_dict(r) for r in trace]
    spent = Ledger.from_dict(usage)
    assert sum(r.target.calls for r in rounds) + usage["test"]["calls"] == spent.target.calls
    assert sum(r.optimizer.calls for r in rounds) == spent.optimizer.calls
    assert sum(r.cost_usd for r in rounds) + usage["test"]["cost_usd"] == pytest.approx(spent.cost_usd, rel=1e-9)
    baseline = trace[0]["candidates"][0]["key"]
    prompts = 1 if trace[-1]["best"]["key"][:12] == baseline else 2
    assert usage["test"]["calls"] == prompts * 3, "the baseline and the best prompt (once if the same) on the 3 test documents"
    # the projection is an upper bound here: calls and requests at most, replies at their max_gen_toks cap
    projected = usage["projection"]
    for r, plan in zip(rounds, projected["rounds"]):
        assert r.optimizer.calls <= plan["optimizer"]["calls"] and r.target.calls <= plan["target"]["calls"]
    assert usage["test"]["calls"] <= projected["test"]["target"]["calls"] == 2 * 3
    for side in ("optimizer", "target"):
        assert spent.to_dict()[side]["prompt_tokens"] <= projected["total"][side]["prompt_tokens"]
        assert getattr(spent, side).tokens <= Usage.from_dict(projected["total"][side]).tokens
    assert spent.cost_usd <= projected["total"]["cost_usd"]


@pytest.mark.parametrize("cap", ["max_cost", "max_target_tokens"])
def test_a_cap_stops_at_the_last_complete_round_and_the_best_prompt_is_still_tested(tmp_path, cap):
    sizes = {"rounds": 3, "method_args": {"paraphrases": 3}}  # later rounds larger than round 0
    with serving() as server:
        whole = run(config(server, tmp_path / "whole", **sizes))
        target_log, optimizer_log = ([r.usage for r in side] for side in sides(server))
    r0, r1, r2, _ = rounds = [Ledger.from_dict(r) for r in whole.trace]
    assert all(r.target.calls for r in rounds), "every round scored a new candidate"
    projection = whole.usage["projection"]

    # what each round cost, from the usage the server reported (one request at a time, in round order), priced
    # by hand: the ledger's own totals are checked against it, not used
    def size(usage: dict, optimizer: bool = False) -> float:
        if cap == "max_cost":
            price = OPTIMIZER_PRICE if optimizer else TARGET_PRICE
            return (usage["prompt_tokens"] * price[0] + usage["completion_tokens"] * price[1]) / 1e6
        return 0 if optimizer else usage["prompt_tokens"] + usage["completion_tokens"]

    def split(log: list[dict], counts: list[int]) -> list[list[dict]]:
        ends = [sum(counts[: i + 1]) for i in range(len(counts))]
        return [log[end - n:end] for n, end in zip(counts, ends)]

    target = split(target_log, [r.target.calls for r in rounds])
    optimizer = split(optimizer_log, [r.optimizer.calls for r in rounds])
    for r, sent, asked in zip(rounds, target, optimizer):
        assert r.target.tokens == sum(u["prompt_tokens"] + u["completion_tokens"] for u in sent)
        assert r.optimizer.tokens == sum(u["prompt_tokens"] + u["completion_tokens"] for u in asked)

    def spent(*numbers: int) -> float:
        return sum(size(u) for i in numbers for u in target[i]) + sum(size(u, True) for i in numbers for u in optimizer[i])

    def mean(*numbers: int) -> float:
        sent = [u for i in numbers for u in target[i]]
        return sum(size(u) for u in sent) / len(sent)

    # The budget's rule: a pass is sent if what was spent, the pass at the mean size of the requests so far (the
    # projection's before any) and the projected test evaluation fit the cap. So round 1 fits from `fits` on,
    # round 2's dev pass from `too_much` on; a cap between lets rounds 0 and 1 complete and stops round 2.
    kept = size(projection["test"]["target"])
    asked = [sum(size(u, True) for u in o) for o in optimizer]
    round_0 = asked[0] + len(target[0]) * size(projection["per_request"])
    round_1 = spent(0) + asked[1] + len(target[1]) * mean(0)
    round_2 = spent(0, 1) + asked[2] + len(target[2]) * mean(0, 1)
    fits, too_much = max(round_0, round_1) + kept, round_2 + kept
    assert fits < too_much
    limit = (fits + too_much) / 2 if cap == "max_cost" else int((fits + too_much) / 2)
    lines = []
    with serving() as server:  # one server for the capped run and its resumption (the same port)
        capped = run(config(server, tmp_path / "capped", **sizes, **{cap: limit}), lines)
        state = read_json(tmp_path / "capped" / TASK / "ape" / "state.json")["state"]
        resumed = run(config(server, tmp_path / "capped", **sizes, resume=True))
    flag = "--" + cap.replace("_", "-")
    assert any(f"caps: {flag}" in line and "exceeds them" in line for line in lines), "said before it starts"
    assert [r["round"] for r in capped.trace] == [0, 1] and capped.usage["stopped"].startswith(f"{flag} ")
    assert [c["key"] for r in capped.trace for c in r["candidates"]] == \
        [c["key"] for r in whole.trace[:2] for c in r["candidates"]], "the same rounds as the uncapped run"
    assert capped.scores["test"]["n"] == 3 and capped.usage["test"]["calls"] > 0, "the best prompt was still tested"
    capped_usage = Ledger.from_dict(capped.usage)
    used = capped_usage.cost_usd if cap == "max_cost" else capped_usage.target.tokens
    assert used <= limit, "the whole run, test included, kept to the cap"

    # a resumed run keeps what the capped one spent (the dropped round's optimizer call included)
    spent_before = Ledger.from_dict(state["ledger"])
    assert spent_before.optimizer.calls == 1 + 3 + 3, "rounds 0 and 1, and round 2's calls before its dev pass was refused"
    new_rounds = [Ledger.from_dict(r) for r in resumed.trace[2:]]
    assert [r["round"] for r in resumed.trace] == [0, 1, 2, 3]
    assert resumed.usage["optimizer"]["calls"] == spent_before.optimizer.calls + sum(r.optimizer.calls for r in new_rounds)


def test_cache_hits_are_counted_as_hits_and_cost_nothing(server, tmp_path):
    caches = {"use_cache": str(tmp_path / "target-cache"), "optimizer_cache": str(tmp_path / "optimizer-cache")}
    first = run(config(server, tmp_path / "first", **caches)).usage
    asked = len(server.requests)
    again = run(config(server, tmp_path / "again", **caches)).usage
    assert len(server.requests) == asked, "nothing reached the server"
    for side in ("target", "optimizer"):
        assert again[side]["calls"] == first[side]["calls"] == again[side]["cache_hits"] > 0
        assert again[side]["prompt_tokens"] == again[side]["completion_tokens"] == 0 and again[side]["cost_usd"] == 0


def test_a_pass_that_would_not_fit_is_refused_before_it_is_sent():
    ledger = Ledger(target=Usage(calls=10, prompt_tokens=900, completion_tokens=100, cost_usd=0.5))
    budget = Budget(ledger, Caps(max_cost=1.0), reserve=Usage(cost_usd=0.2))
    budget.target_pass(5)  # 0.5 spent + 5 x 0.05 + 0.2 kept = 0.95
    with pytest.raises(BudgetExhausted, match=r"--max-cost \$1 reached \(\$0.5000 spent, about \$0.3500"):
        budget.target_pass(7)
    tokens = Budget(ledger, Caps(max_target_tokens=2_000), reserve=Usage(prompt_tokens=500))
    tokens.target_pass(5)  # 1,000 + 500 + 500
    with pytest.raises(BudgetExhausted, match="--max-target-tokens 2,000 reached"):
        tokens.target_pass(6)



def test_without_a_tokenizer_or_usage_tokens_are_estimated_and_shown_as_such():
    from conftest import make_bridge, rule_lm

    from lm_eval_abo.reports.run_report import tokens_text

    bridge = make_bridge(rule_lm(), abo_n_dev=4)
    [score] = bridge.score([bridge.default_prompt], "dev", [0, 1, 2])
    usage = bridge.counter.usage
    assert usage.estimated and usage.calls == 3
    assert usage.prompt_tokens == sum(-(-len(s.prompt) // 4) for s in score.samples)
    assert tokens_text(usage.to_dict()).endswith(" (estimated)")


def test_the_projection_renders_the_tasks_real_prompts_and_counts_each_methods_calls():
    from conftest import make_bridge, rule_lm

    from lm_eval_abo.run.projection import project
    from lm_eval_abo.run.session import plan_session, prices_of, resolve_run

    cfg, method, params = resolve_run(OptimizeConfig(
        task=TASK, method="apo", model="local-completions", model_args="model=fake,tokenizer_backend=None", rounds=2,
        beam=2, train_limit=6, dev_limit=4, test_limit=5, minibatch=3,
        metadata={"abo_n_train": 8, "abo_n_dev": 4, "abo_n_test": 5}))
    plan = project(plan_session(cfg), method, params, prices_of(cfg), cfg.optimizer, None)
    n_dev = 4
    # apo's defaults, per beam prompt of a later round: 2 gradients, 2 edits, 3 paraphrases (of the edits and the
    # prompt) = 7 calls, and 4 children kept (max_expansion_factor); round 0: 2 initial instructions
    assert [r.optimizer.calls for r in plan.rounds] == [2, 2 * 7, 2 * 7]
    # round 0: the baseline and 2 initial candidates on dev; later: 8 children on dev, 2 train minibatches of 3
    assert [r.target.calls for r in plan.rounds] == [(1 + 2) * n_dev] + [8 * n_dev + 2 * 3] * 2
    assert plan.test.target.calls == 2 * 5 and plan.rounds[0].target.estimated
    # the baseline's share of round 0 is the task's own dev prompts, as the target would be sent them (the task's
    # YAML: description, answer format, question, answer prefix), at 4 characters a token, rounded up
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4, abo_n_test=5)
    sent = [("Questions that involve enumerating objects and asking the model to count them.\n\n"
             'End your answer with "So the answer is N." where N is a number.\n\n'
             f"Q: {doc['input']}\nA: Let's think step by step.") for doc in bridge.docs("dev")[:n_dev]]
    baseline_prompts = sum(-(-len(text) // 4) for text in sent)
    written = 60  # an instruction, the size the paraphrase meta-prompt asks for
    assert plan.rounds[0].target.prompt_tokens == baseline_prompts + 2 * (baseline_prompts + n_dev * written)
    assert plan.rounds[0].target.completion_tokens == 3 * n_dev * 160, "every reply at the task's max_gen_toks"


@pytest.mark.parametrize(("model", "model_args", "expected"), [
    ("openai-completions", "model=gpt-3.5-turbo-instruct", (1.5, 2.0, "litellm")),
    ("local-completions", "model=my-own-model,base_url=http://127.0.0.1:9/v1/completions", (0.0, 0.0, "local")),
    ("abo-embedded", "model=gemma-3-270m", (0.0, 0.0, "local")),
    ("openai-chat-completions", "model=a-model-nobody-priced", None),
])
def test_the_targets_price_comes_from_litellms_cost_map_or_is_local(model, model_args, expected):
    from lm_eval_abo.cost.prices import target_price
    from lm_eval_abo.infra.flags import parse_pairs

    price = target_price(model, parse_pairs(model_args))
    assert (price and (price.input, price.output, price.source)) == expected
    given = target_price(model, parse_pairs(model_args), (4.0, 8.0))
    assert (given.input, given.output, given.source) == (4.0, 8.0, "--target-price")

@pytest.mark.slow
def test_the_embedded_targets_tokens_are_its_tokenizers_and_its_cache_hits_cost_nothing(tmp_path, monkeypatch):
    from conftest import make_bridge

    from lm_eval_abo.cost.ledger import Price
    from lm_eval_abo.embedded import llama
    from lm_eval_abo.embedded.backend import EmbeddedLM

    served, complete = [], llama.complete  # what llama.cpp itself reports for each completion

    def metered(*args, **kwargs):
        result = complete(*args, **kwargs)
        served.append(result["usage"])
        return result

    monkeypatch.setattr(llama, "complete", metered)

    lm = EmbeddedLM()
    harness = {"gen_kwargs": {"max_gen_toks": 24}, "use_cache": str(tmp_path / "target-cache")}
    bridges = [make_bridge(lm, harness=harness) for _ in range(2)]  # the second: a new run on the same cache
    for bridge in bridges:
        bridge.counter.price = Price(1.0, 2.0, "test")
    [score] = bridges[0].score([bridges[0].default_prompt], "dev", [0, 1, 2])
    first = bridges[0].counter.usage
    prompts = sum(len(lm.tok_encode(s.prompt)) for s in score.samples)
    outputs = sum(len(lm.tok_encode(s.output, add_special_tokens=False)) for s in score.samples)
    assert (first.calls, first.cache_hits, first.estimated) == (3, 0, False)
    assert first.prompt_tokens == prompts == sum(u["prompt_tokens"] for u in served), "as llama.cpp counted them"
    assert first.completion_tokens == outputs > 0
    assert abs(outputs - sum(u["completion_tokens"] for u in served)) <= 2 * len(served), "a stop sequence's tokens"
    assert first.cost_usd == pytest.approx((prompts * 1.0 + outputs * 2.0) / 1e6, rel=1e-12)

    bridges[1].score([bridges[1].default_prompt], "dev", [0, 1, 2])
    again = bridges[1].counter.usage
    assert (again.calls, again.cache_hits, again.tokens, again.cost_usd) == (3, 3, 0, 0.0) and len(served) == 3


@pytest.mark.slow
def test_a_real_runs_use_is_within_the_projections_stated_error(tmp_path):
    """The embedded models, ape at the size of bench/method_cost.py's quick run: each side's tokens and the
    run's dollars within the error the README states (0.15x to 2x of the projection)."""
    cfg = OptimizeConfig(task=TASK, method="ape", rounds=1, beam=1, train_limit=4, dev_limit=3, test_limit=3, minibatch=2,
                         gen_kwargs={"max_gen_toks": 48}, patience=0, optimizer_cache=None, output=str(tmp_path),
                         target_price=(0.5, 1.5), optimizer_price=(2.5, 10.0))
    usage = run(cfg).usage
    projected = usage["projection"]["total"]
    for side in ("optimizer", "target"):
        got, plan = Usage.from_dict(usage[side]), Usage.from_dict(projected[side])
        assert got.calls <= 2 * plan.calls, "at most the projected calls, each asked again once for its format"
        assert 0.15 <= got.tokens / plan.tokens <= 2.0, (side, got.tokens, plan.tokens)
    assert 0.15 <= usage["cost_usd"] / projected["cost_usd"] <= 2.0


def test_a_target_pass_is_checked_with_the_grader_calls_that_grade_its_replies():
    """A metric that asks a grader: the cap counts the grader's mean cost per target request so far (the
    projection's before any) and its projected part of the test evaluation."""
    ledger = Ledger(target=Usage(calls=10, prompt_tokens=100, cost_usd=0.01), grader=Usage(calls=10, cost_usd=0.02))
    budget = Budget(ledger, Caps(max_cost=0.05))
    budget.target_pass(5)  # spent 0.03; 5 requests: 0.005 target + 0.010 grader -> 0.045
    with pytest.raises(BudgetExhausted, match="--max-cost"):
        budget.target_pass(10)  # 0.03 + 0.010 + 0.020 = 0.06: only the grader's share puts it over
    kept = Budget(ledger, Caps(max_cost=0.05), grader_reserve=Usage(calls=4, cost_usd=0.012))
    with pytest.raises(BudgetExhausted, match=r"\$0\.0120 kept for the test evaluation"):
        kept.target_pass(5)  # 0.045 + the grader's 0.012 kept for the test evaluation = 0.057
    fresh = Budget(Ledger(), Caps(max_cost=0.05), per_request=Usage(calls=1, cost_usd=0.001),
                   grader_per_request=Usage(calls=1, cost_usd=0.004))
    fresh.target_pass(10)  # before any: the projection's 0.001 + 0.004 per request -> 0.05, at the cap
    with pytest.raises(BudgetExhausted):
        fresh.target_pass(11)
    assert Ledger.from_dict(ledger.to_dict()) == ledger and ledger.cost_usd == 0.03
    assert Ledger.from_dict({"optimizer": {}, "target": {"calls": 2}}).grader == Usage(), "ledgers written before the grader"
