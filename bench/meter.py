"""A meter on the embedded models: every llama.cpp call the package makes goes through
`embedded.llama.complete` (the target, a completion model) or `embedded.llama.chat` (the optimizer); the
meter wraps both and logs each call's model, tokens and seconds. Behaviour is unchanged; only benchmarks use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Call:
    model: str
    prompt_tokens: int
    completion_tokens: int
    started: float
    seconds: float  # from the call to its answer, waits for the model's lock included


@dataclass
class Meter:
    calls: list[Call] = field(default_factory=list)

    def install(self) -> Meter:
        from lm_eval_abo.embedded import llama as embedded

        def metered(function):
            def wrapper(name, *args, **kwargs):
                started = time.perf_counter()
                result = function(name, *args, **kwargs)
                usage = result.get("usage") or {}
                self.calls.append(Call(name, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                                       started, time.perf_counter() - started))
                return result

            return wrapper

        embedded.complete = metered(embedded.complete)  # EmbeddedLM.generate_until calls it by module name
        embedded.chat = metered(embedded.chat)
        return self

    def of(self, model: str) -> list[Call]:
        return [c for c in self.calls if c.model == model]


def busy_seconds(calls: list[Call]) -> float:
    """Seconds during which at least one call was in flight (concurrent optimizer calls overlap)."""
    busy, end = 0.0, float("-inf")
    for call in sorted(calls, key=lambda c: c.started):
        stop = call.started + call.seconds
        busy += max(0.0, stop - max(call.started, end))
        end = max(end, stop)
    return busy


def totals(calls: list[Call]) -> dict:
    return {"calls": len(calls), "prompt_tokens": sum(c.prompt_tokens for c in calls),
            "completion_tokens": sum(c.completion_tokens for c in calls), "model_s": round(busy_seconds(calls), 1)}


def split_by_counts(calls: list[Call], counts: list[int]) -> list[list[Call]]:
    """Consecutive slices of `calls` of the given sizes (the target's requests, in the order the rounds
    and then the test evaluation sent them)."""
    slices, start = [], 0
    for n in counts:
        slices.append(calls[start : start + n])
        start += n
    return slices
