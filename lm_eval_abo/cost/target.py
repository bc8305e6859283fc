"""The target model as a run calls it: every request that reaches it entered in the ledger, and a target
that stops answering turned into one clear error."""

from __future__ import annotations

from contextlib import contextmanager

from lm_eval.api.model import LM

from lm_eval_abo.cost.ledger import Price, Usage
from lm_eval_abo.cost.tokens import TargetMeter
from lm_eval_abo.infra.errors import AboError


class CountingLM(LM):
    """Passes every request to the wrapped model and enters the ones that reach it in the target's side of
    the ledger, with their tokens (`tokens.TargetMeter`) and cost at `price` (None: unknown). Under
    lm-eval's CachingLM cache hits never reach it; `cache_hits` enters them."""

    def __init__(self, inner: LM, usage: Usage | None = None, price: Price | None = None):
        super().__init__()
        self.inner = inner
        self.usage = usage or Usage()
        self.price = price
        self.meter = TargetMeter(inner)
        self.requests = 0  # requests that reached the model

    def _count(self, name: str, requests, disable_tqdm: bool):
        self.meter.start()
        results = getattr(self.inner, name)(requests, disable_tqdm=disable_tqdm)
        prompt, completion, estimated = self.meter.tokens(name, requests, results)
        self.requests += len(requests)
        self.usage.calls += len(requests)
        self.usage.add(prompt, completion, self.price.cost(prompt, completion) if self.price else None, estimated)
        return results

    def cache_hits(self, rows: list[dict], reached_before: int) -> None:
        """Enter the requests of an lm-eval pass (its sample rows, one filter) that lm-eval's cache answered:
        those asked less those that reached the model since `reached_before`."""
        asked = sum(len(resps) for row in rows for resps in row["resps"])
        hits = asked - (self.requests - reached_before)
        self.usage.calls += hits
        self.usage.cache_hits += hits

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._count("loglikelihood", requests, disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self._count("loglikelihood_rolling", requests, disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._count("generate_until", requests, disable_tqdm)

    def set_cache_hook(self, cache_hook) -> None:
        self.inner.set_cache_hook(cache_hook)  # the wrapped model writes each result as it comes

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True):
        return self.inner.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

    @property
    def tokenizer_name(self) -> str:
        return self.inner.tokenizer_name

    def chat_template(self, chat_template=False):
        return self.inner.chat_template(chat_template)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class TargetFailed(AboError):
    """The target model stopped answering (a server that died or timed out, after lm-eval's retries)."""


@contextmanager
def target_calls():
    """Around lm-eval calls that reach the target: a network failure becomes one clear TargetFailed.
    lm-eval's API backends raise requests' errors (OSError subclasses) or aiohttp's."""
    failures: tuple[type[BaseException], ...] = (OSError,)
    try:
        import aiohttp

        failures += (aiohttp.ClientError,)
    except ImportError:
        pass
    try:
        yield
    except failures as e:
        raise TargetFailed(f"the target model failed: {_network_error(e)}") from e


def _network_error(error: BaseException) -> str:
    """A network error in short: requests nests the OS reason ("[Errno 111] Connection refused") deep in
    a long message; the URL comes from the request."""
    import re

    text = str(error)
    reason = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    detail = reason.group(0) if reason else (text.strip().splitlines() or [""])[0][:240]
    url = getattr(getattr(error, "request", None), "url", None)
    return f"{type(error).__name__}: {detail}" + (f" ({url})" if url else "")
