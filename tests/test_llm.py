"""The optimizer client, with litellm's mock responses (no model, no network)."""

import logging

import litellm
import pytest

from lm_eval_abo.cost.ledger import Budget, BudgetExhausted, Caps, Ledger, Price
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.llm import OptimizerLLM

MESSAGES = [{"role": "user", "content": "Write an instruction."}]
MOCK = {"mock_response": "<prompt>Count carefully.</prompt>"}


def test_ledger_counts_calls_tokens_and_cost_and_the_disk_cache_answers_repeats(tmp_path):
    llm = OptimizerLLM("openai/gpt-4o-mini", MOCK, cache_dir=tmp_path / "cache")
    assert llm.complete(MESSAGES) == "<prompt>Count carefully.</prompt>"
    first = llm.usage.to_dict()
    assert first["calls"] == 1 and first["prompt_tokens"] > 0 and first["cost_usd"] > 0 and first["cost_known"]
    llm.complete(MESSAGES)
    assert llm.usage.cache_hits == 1 and llm.usage.prompt_tokens == first["prompt_tokens"], "a cache hit costs nothing"
    llm.complete(MESSAGES, seed=7)
    assert llm.usage.cache_hits == 1 and llm.usage.prompt_tokens == 2 * first["prompt_tokens"], "another seed is another request"
    again = OptimizerLLM("openai/gpt-4o-mini", MOCK, cache_dir=tmp_path / "cache")
    again.complete(MESSAGES)
    assert again.usage.cache_hits == 1, "the cache outlives the process that wrote it"


def test_unknown_prices_count_tokens_only():
    llm = OptimizerLLM("openai/my-local-alias", MOCK)
    llm.complete(MESSAGES)
    assert llm.usage.prompt_tokens > 0 and not llm.usage.cost_known


def capped(**caps) -> OptimizerLLM:
    ledger = Ledger()
    return OptimizerLLM("openai/gpt-4o-mini", MOCK, budget=Budget(ledger, Caps(**caps)), usage=ledger.optimizer)


def test_call_and_cost_caps_stop_with_budget_exhausted():
    llm = capped(max_optimizer_calls=2)
    llm.complete(MESSAGES)
    llm.complete(MESSAGES, seed=1)
    with pytest.raises(BudgetExhausted, match="--max-optimizer-calls 2 reached"):
        llm.complete(MESSAGES, seed=2)
    pricey = capped(max_cost=1e-9)
    pricey.complete(MESSAGES)
    with pytest.raises(BudgetExhausted, match=r"--max-cost \$1e-09 reached"):
        pricey.complete(MESSAGES, seed=1)


def test_a_given_price_overrides_litellms_and_costs_exactly_the_tokens():
    llm = OptimizerLLM("openai/my-local-alias", MOCK, price=Price(2.0, 8.0, "--optimizer-price"))
    llm.complete(MESSAGES)
    usage = llm.usage
    assert usage.cost_known and usage.cost_usd == pytest.approx((2.0 * usage.prompt_tokens + 8.0 * usage.completion_tokens) / 1e6)


def _flaky(monkeypatch, errors):
    """litellm.completion failing with `errors` first, then answering."""
    real = litellm.completion
    attempts = []

    def completion(**kwargs):
        attempts.append(kwargs)
        if len(attempts) <= len(errors):
            raise errors[len(attempts) - 1]
        return real(**kwargs)

    monkeypatch.setattr(litellm, "completion", completion)
    return attempts


@pytest.mark.parametrize("error", [
    litellm.RateLimitError("slow down", llm_provider="openai", model="m"),
    litellm.Timeout("timed out", llm_provider="openai", model="m"),
    litellm.InternalServerError("boom", llm_provider="openai", model="m"),
    litellm.ServiceUnavailableError("503", llm_provider="openai", model="m"),
])
def test_transient_errors_are_retried_with_backoff(monkeypatch, error):
    attempts = _flaky(monkeypatch, [error, error])
    llm = OptimizerLLM("openai/gpt-4o-mini", MOCK, retries=3, backoff_s=0.01)
    assert llm.complete(MESSAGES) == "<prompt>Count carefully.</prompt>"
    assert len(attempts) == 3 and attempts[0]["timeout"] == llm.timeout and attempts[0]["num_retries"] == 0


def test_a_request_failing_after_its_retries_is_dropped_not_fatal(monkeypatch, caplog):
    error = litellm.RateLimitError("slow down", llm_provider="openai", model="m")
    _flaky(monkeypatch, [error] * 3)
    llm = OptimizerLLM("openai/gpt-4o-mini", MOCK, retries=2, backoff_s=0.01, concurrency=1)
    with caplog.at_level(logging.WARNING, logger="lm_eval_abo"):
        replies = llm.complete_many([(MESSAGES, 0), (MESSAGES, 1)])
    assert replies == [None, "<prompt>Count carefully.</prompt>"]
    assert llm.usage.failures == 1 and "dropped" in caplog.text


def test_bad_credentials_are_one_clear_error_without_retries(monkeypatch):
    attempts = _flaky(monkeypatch, [litellm.AuthenticationError("bad key sk-123", llm_provider="openai", model="m")])
    with pytest.raises(AboError, match="optimizer openai/gpt-4o-mini"):
        OptimizerLLM("openai/gpt-4o-mini", MOCK, backoff_s=0.01).complete(MESSAGES)
    assert len(attempts) == 1


def test_unknown_embedded_model_is_rejected_before_any_call():
    with pytest.raises(AboError, match="unknown embedded model"):
        OptimizerLLM("embedded/gpt-9")
