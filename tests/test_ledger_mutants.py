"""The ledger's arithmetic and the caps at their edges, on hand-made usage (every expected value by hand)."""

import pytest

from lm_eval_abo.cost.ledger import Budget, BudgetExhausted, Caps, Ledger, Usage


def test_flags_stick_once_set_and_combine_as_any_estimated_all_priced():
    usage = Usage()
    usage.add(10, 5, 0.01, estimated=True)
    usage.add(10, 5, None, estimated=False)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated, usage.cost_known) == (20, 10, True, False)
    priced, unpriced = Usage(cost_usd=0.1), Usage(cost_usd=0.2, cost_known=False, estimated=True)
    for combined in (priced.plus(unpriced), unpriced.plus(priced), unpriced.minus(priced)):
        assert combined.cost_known is False and combined.estimated is True
    assert priced.plus(priced).cost_known is True and priced.plus(priced).estimated is False
    assert priced.plus(unpriced).cost_usd == 0.3, "0.1 + 0.2 without the float's trailing digits"
    scaled = unpriced.scaled(3)
    assert (scaled.cost_known, scaled.estimated, scaled.cost_usd) == (False, True, pytest.approx(0.6))


def test_dicts_round_the_cost_and_say_whether_it_is_known():
    assert Usage(calls=2, cost_usd=0.1 + 0.2).to_dict() == {
        "calls": 2, "cache_hits": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.3,
        "cost_known": True, "estimated": False}
    ledger = Ledger(optimizer=Usage(cost_usd=0.1), grader=Usage(cost_usd=0.2, cost_known=False))
    d = ledger.to_dict()
    assert (d["cost_usd"], d["cost_known"], d["grader"]["cost_known"]) == (0.3, False, False)


def test_a_snapshot_copies_all_three_sides():
    ledger = Ledger(Usage(calls=1), Usage(calls=2), Usage(calls=3))
    snapshot = ledger.snapshot()
    ledger.grader.calls = 9
    assert (snapshot.optimizer.calls, snapshot.target.calls, snapshot.grader.calls) == (1, 2, 3)


def test_a_ledger_exactly_at_a_cap_fits():
    ledger = Ledger(optimizer=Usage(calls=3, cost_usd=0.25), target=Usage(prompt_tokens=80, completion_tokens=20))
    assert Caps(max_cost=0.25, max_target_tokens=100, max_optimizer_calls=3).fit(ledger)
    assert not Caps(max_cost=0.24).fit(ledger) and not Caps(max_target_tokens=99).fit(ledger)
    assert not Caps(max_optimizer_calls=2).fit(ledger)


def test_the_optimizer_call_cap_refuses_the_call_past_it_and_says_which():
    budget = Budget(Ledger(optimizer=Usage(calls=2)), Caps(max_optimizer_calls=3))
    budget.optimizer_call()  # the third call
    budget.ledger.optimizer.calls = 3
    with pytest.raises(BudgetExhausted) as err:
        budget.optimizer_call()
    assert str(err.value) == "--max-optimizer-calls 3 reached"


def test_an_optimizer_call_uses_no_target_tokens_and_costs_the_mean_call():
    spent = Ledger(optimizer=Usage(calls=2, cost_usd=0.02), target=Usage(calls=1, prompt_tokens=100))
    Budget(spent, Caps(max_target_tokens=100)).optimizer_call()  # target tokens at their cap: still fits
    with pytest.raises(BudgetExhausted) as err:
        Budget(spent, Caps(max_cost=0.025)).optimizer_call()  # 0.02 spent + 0.01 for the mean call > 0.025
    assert str(err.value) == ("--max-cost $0.025 reached ($0.0200 spent, about $0.0100 for the next optimizer call, "
                              "$0.0000 kept for the test evaluation)")


def test_a_target_pass_is_its_mean_request_times_the_requests():
    # 3 requests of 90 prompt and 10 completion tokens on average: 2 more are 200 tokens; 300 + 200 > 450
    spent = Ledger(target=Usage(calls=3, prompt_tokens=270, completion_tokens=30))
    with pytest.raises(BudgetExhausted) as err:
        Budget(spent, Caps(max_target_tokens=450)).target_pass(2)
    assert str(err.value) == ("--max-target-tokens 450 reached (300 spent, about 200 for the next 2 target requests, "
                              "0 kept for the test evaluation)")
    Budget(spent, Caps(max_target_tokens=500)).target_pass(2)


def test_before_the_grader_has_graded_anything_its_projected_use_counts():
    spent = Ledger(target=Usage(calls=5, prompt_tokens=50))  # the target costs nothing (local)
    budget = Budget(spent, Caps(max_cost=0.05), grader_per_request=Usage(cost_usd=0.01))
    with pytest.raises(BudgetExhausted, match="about \\$0.1000 for the next 10 target requests"):
        budget.target_pass(10)
    budget.target_pass(4)  # 0.04 of grading fits
