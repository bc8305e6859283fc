"""Instant stand-ins for both models, so a profile shows the harness and not llama.cpp.

`InstantTarget` is an lm-eval model that answers every request at once (right on a fixed share of the
documents, so there are errors to reflect on). `register_instant_optimizer()` makes `instant/optimizer` a
litellm model string whose replies carry every tag the meta-prompts ask for, varied per request, so the
methods parse them and propose distinct candidates. Neither is used outside bench/.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache

from lm_eval.api.model import LM

INSTANT_OPTIMIZER = "instant/optimizer"


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


class InstantTarget(LM):
    """Answers in no time: right for about a third of the documents, whatever the prompt."""

    def __init__(self):
        super().__init__()
        self.requests = 0

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs = []
        for request in requests:
            self.requests += 1
            target = request.doc.get("target", "0")
            answer = target if _digest(str(request.doc.get("input"))) % 3 == 0 else "0"
            outputs.append(f" Step 1: list the items.\nStep 2: count them.\nSo the answer is {answer}.")
            self.cache_hook.add_partial("generate_until", request.args, outputs[-1])
        return outputs

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def instant_reply(text: str) -> str:
    """A reply with every tag the templates parse; a demonstration reaches the hinted answer."""
    n = _digest(text) % 1000
    hinted = re.search(r"correct final answer is (\S+?);", text)
    answer = hinted.group(1) if hinted else "0"
    return (
        f"<prompt>Count each object one by one, variant {n}.</prompt>"
        f"<reason>The instruction does not say how to count repeated items ({n}).</reason>"
        f"<summary>Repeated items are miscounted ({n}).</summary>"
        f"<procedure>1. List every object named ({n}).\n2. Keep those of the asked kind.\n3. Add up their numbers.\n"
        f"4. Write the total.</procedure>"
        f"<steps>1. Write each object with its number ({n}).\n2. Keep the asked kind.</steps>"
        f"<step>{1 + n % 3}</step><kind>{'wrong' if n % 2 else 'not_followed'}</kind><why>It skipped an item.</why>"
        f"<solution>Step 1: listed.\nStep 2: kept.\nStep 3: added.\nStep 4: So the answer is {answer}.</solution>"
    )


@cache
def register_instant_optimizer() -> None:
    import litellm

    class Instant(litellm.CustomLLM):
        def completion(self, model, messages, *args, **kwargs):
            text = "\n".join(m["content"] for m in messages)
            reply = instant_reply(text)
            return litellm.ModelResponse(
                choices=[{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                usage={"prompt_tokens": len(text) // 4, "completion_tokens": len(reply) // 4,
                       "total_tokens": (len(text) + len(reply)) // 4},
            )

        async def acompletion(self, model, messages, *args, **kwargs):
            return self.completion(model, messages, *args, **kwargs)

    litellm.custom_provider_map = [*litellm.custom_provider_map, {"provider": "instant", "custom_handler": Instant()}]
    litellm.utils.custom_llm_setup()
    free = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "instant", "mode": "chat"}
    litellm.register_model({INSTANT_OPTIMIZER: free})
