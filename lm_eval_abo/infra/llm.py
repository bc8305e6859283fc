"""The optimizer LLM, called through litellm: any model string litellm knows, or `embedded/<name>`.

What this adds to litellm: bounded concurrency, retries with exponential backoff on the errors worth
retrying (rate limits, time-outs, connection errors, 5xx), an on-disk cache (litellm's own), the
optimizer's side of the run's ledger (calls, tokens, dollars) and the run's caps, checked before each call.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lm_eval_abo.cost.ledger import Budget, BudgetExhausted, Price, Usage
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.flags import CLIENT_ARGS
from lm_eval_abo.infra.redact import scrub, secret_values

log = logging.getLogger("lm_eval_abo")
RETRIES = 4
TIMEOUT_S = 120.0
BACKOFF_S = 1.0
CONCURRENCY = 4
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is not honoured: the exponential backoff applies


def _retryable() -> tuple[type[Exception], ...]:
    import litellm

    return (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )


def _client_arg(args: dict, key: str, default: float) -> float:
    """A CLIENT_ARGS value taken out of `args`, checked."""
    value = args.pop(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise AboError(f"--optimizer_args {key} ({CLIENT_ARGS[key]}) must be a number of at least 0, got {value!r}")
    return value


class _RetryAfterOrBackoff:
    """tenacity wait: the server's Retry-After when it gives one, else exponential backoff with jitter."""

    def __init__(self, backoff_s: float):
        from tenacity import wait_exponential_jitter

        self.backoff = wait_exponential_jitter(multiplier=backoff_s, max=30 * backoff_s, jitter=backoff_s)

    def __call__(self, retry_state) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        headers = getattr(error, "litellm_response_headers", None) or {}
        try:
            seconds = float(headers.get("retry-after"))
        except (TypeError, ValueError):
            seconds = -1.0
        return seconds if 0 <= seconds <= MAX_RETRY_AFTER_S else self.backoff(retry_state)


class OptimizerLLM:
    """One optimizer model with its settings, cache, usage and budget. `price` (US dollars per million
    tokens) overrides litellm's price of the model, e.g. for a self-hosted one."""

    def __init__(
        self,
        model: str,
        args: dict | None = None,
        cache_dir: str | Path | None = None,
        budget: Budget | None = None,
        price: Price | None = None,
        concurrency: int = CONCURRENCY,
        timeout: float = TIMEOUT_S,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        usage: Usage | None = None,
    ):
        import litellm

        litellm.suppress_debug_info = True
        if model.startswith("embedded/"):
            from lm_eval_abo.embedded import minilm
            from lm_eval_abo.embedded.models import model_info
            from lm_eval_abo.embedded.provider import register_litellm_provider

            if model.split("/", 1)[1] != minilm.NAME:
                model_info(model.split("/", 1)[1])  # unknown names fail here, with the known ones listed
            register_litellm_provider()
            # An in-process model answers one call at a time anyway; asked in order, a run repeats
            # exactly (llama.cpp's reply shifts a little with the prompt it served before).
            concurrency = 1
        try:
            litellm.get_llm_provider(model)  # an unknown provider fails now, not after the target is scored
        except litellm.BadRequestError:
            raise AboError(f"--optimizer {model}: litellm knows no provider for it "
                           "(e.g. openai/<model>, anthropic/<model>)") from None
        args = dict(args or {})
        timeout, backoff_s = _client_arg(args, "timeout", timeout), _client_arg(args, "retry_backoff", backoff_s)
        retries = int(_client_arg(args, "num_retries", retries))
        if cache_dir is not None:
            import sqlite3

            from litellm.caching.caching import Cache

            try:  # a diskcache folder: safe for several processes at once
                Path(cache_dir).mkdir(parents=True, exist_ok=True)
                litellm.cache = Cache(type="disk", disk_cache_dir=str(cache_dir))
            except (OSError, sqlite3.Error) as e:
                raise AboError(f"--optimizer-cache {cache_dir}: not a folder a cache can be kept in "
                               f"({getattr(e, 'strerror', None) or e}); choose another, or --no-optimizer-cache") from None
        self.model = model
        self.args = args
        self.secrets = secret_values(args)  # masked in every message this client writes
        self.cached, self.cache_dir = cache_dir is not None, cache_dir
        self.budget, self.price = budget, price
        self.concurrency, self.timeout, self.retries, self.backoff_s = concurrency, timeout, retries, backoff_s
        self.usage = usage or Usage()
        self._lock = threading.Lock()

    def exhausted(self) -> str | None:
        """Why no further call may be made (a budget cap reached), or None."""
        try:
            if self.budget is not None:
                self.budget.optimizer_call()
        except BudgetExhausted as e:
            return str(e)
        return None

    def _reserve(self) -> None:
        with self._lock:
            if self.budget is not None:
                self.budget.optimizer_call()
            self.usage.calls += 1

    def _record(self, response) -> None:

        hidden = getattr(response, "_hidden_params", {}) or {}
        usage = getattr(response, "usage", None)
        prompt, completion = getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
        cost = self.price.cost(prompt, completion) if self.price else self._litellm_cost(response, hidden)
        with self._lock:
            if hidden.get("cache_hit"):
                self.usage.cache_hits += 1
            else:
                self.usage.add(prompt, completion, cost)

    @staticmethod
    def _litellm_cost(response, hidden: dict) -> float | None:
        """litellm's cost of a response (it knows cached-token discounts and tiers); None: no price known."""
        import litellm

        cost = hidden.get("response_cost")
        if cost is None:
            try:
                cost = litellm.completion_cost(completion_response=response)
            except Exception:  # litellm knows no price for this model
                return None
        return float(cost)

    def complete(self, messages: list[dict], seed: int = 0, **overrides) -> str:
        """One chat completion; `seed` tells apart requests that would otherwise be identical."""
        import litellm

        self._reserve()
        kwargs = {
            **self.args, **overrides, "model": self.model, "messages": messages, "seed": seed,
            "timeout": self.timeout, "num_retries": 0, "max_retries": 0, "caching": self.cached,
        }
        response = self._call(litellm.completion, "optimizer", kwargs)
        return response.choices[0].message.content or ""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """The embeddings of `texts`, asked in one call (litellm's `embedding`), with the same retries, reply
        cache, usage (prompt tokens, dollars) and caps as a completion."""
        import litellm

        self._reserve()
        kwargs = {k: v for k, v in self.args.items() if k in ("api_base", "api_key", "dimensions", "extra_headers")}
        kwargs |= {"model": self.model, "input": list(texts), "timeout": self.timeout, "caching": self.cached}
        response = self._call(litellm.embedding, "embedding model", kwargs)
        rows = sorted(response.data, key=lambda row: row["index"] if isinstance(row, dict) else row.index)
        return [list(row["embedding"] if isinstance(row, dict) else row.embedding) for row in rows]

    def _call(self, ask, what: str, kwargs: dict):
        """`ask(**kwargs)` with the client's retries; a request the provider refuses is one line naming
        `what`; any other failure is counted and raised; the reply's usage is recorded."""
        import litellm
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        retrying = Retrying(retry=retry_if_exception_type(_retryable()), wait=_RetryAfterOrBackoff(self.backoff_s),
                            stop=stop_after_attempt(self.retries + 1), reraise=True)
        try:
            response = retrying(ask, **kwargs)
        except (litellm.AuthenticationError, litellm.NotFoundError, litellm.BadRequestError) as e:
            raise AboError(f"{what} {self.model}: {self.describe(e)}") from None
        except Exception:
            with self._lock:
                self.usage.failures += 1
            raise
        self._record(response)
        return response

    def describe(self, error: Exception) -> str:
        """An error from litellm as one line, with this client's secrets masked (some servers echo
        the key they refused)."""
        lines = str(error).strip().splitlines()
        return scrub(lines[0] if lines else type(error).__name__, self.secrets)[:300]

    def complete_many(self, requests: list[tuple[list[dict], int]], desc: str = "optimizer",
                      temperature: float | None = None) -> list[str | None]:
        """Several completions at once (bounded concurrency); a request that fails after its retries
        gives None and a warning, so one bad call never ends the run. Budget exhaustion still raises.
        `temperature`, when given, is this batch's (over the optimizer's own)."""
        from tqdm import tqdm

        overrides = {} if temperature is None else {"temperature": temperature}

        def one(request):
            messages, seed = request
            try:
                return self.complete(messages, seed=seed, **overrides)
            except (BudgetExhausted, AboError):
                raise
            except Exception as e:  # after retries: drop this one request
                log.warning("optimizer call failed after %d retries and was dropped: %s",
                            self.retries, self.describe(e))
                return None

        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            futures = [pool.submit(one, r) for r in requests]
            results = []
            for future in tqdm(futures, desc=desc, leave=False, disable=len(requests) < 2):
                results.append(future.result())
        return results
