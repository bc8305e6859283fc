"""The embedded models as litellm model strings (`embedded/<name>`), through litellm's custom providers; the
offline embedding model as `embedded/all-minilm-l6-v2` (litellm's `embedding`)."""

from __future__ import annotations

import time
from functools import cache

from lm_eval_abo.embedded import llama, minilm
from lm_eval_abo.embedded.models import MODELS


@cache
def register_litellm_provider() -> None:
    """Make `embedded/<name>` a litellm model string (litellm's custom-provider mechanism)."""
    import asyncio

    import litellm

    class EmbeddedProvider(litellm.CustomLLM):
        def completion(self, model, messages, *args, optional_params=None, **kwargs):
            params = optional_params or {}
            name = model.split("/", 1)[-1]
            started = time.time()
            result = llama.chat(
                name,
                messages,
                max_tokens=int(params.get("max_tokens") or params.get("max_completion_tokens") or 512),
                temperature=float(params.get("temperature", 0.0) or 0.0),
                stop=params.get("stop"),
                seed=int(params.get("seed", 0) or 0),
                repeat_penalty=float(params.get("repeat_penalty", llama.CHAT_REPEAT_PENALTY)),
            )
            result["created"] = int(started)
            return litellm.ModelResponse(**result)

        async def acompletion(self, model, messages, *args, **kwargs):
            return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

        def embedding(self, model, input, model_response, *args, **kwargs):
            found = minilm.embed([input] if isinstance(input, str) else list(input))
            model_response.data = [{"object": "embedding", "index": i, "embedding": vector}
                                   for i, (vector, _) in enumerate(found)]
            model_response.model = model
            tokens = sum(n for _, n in found)
            model_response.usage = litellm.Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)
            return model_response

        async def aembedding(self, model, input, model_response, *args, **kwargs):
            return await asyncio.to_thread(self.embedding, model, input, model_response, *args, **kwargs)

    provider = {"provider": "embedded", "custom_handler": EmbeddedProvider()}
    litellm.custom_provider_map = [*litellm.custom_provider_map, provider]
    litellm.utils.custom_llm_setup()
    # local models cost nothing: a known price of 0 keeps the cost ledger exact
    free = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "embedded", "mode": "chat"}
    litellm.register_model({**{f"embedded/{name}": free for name in MODELS},
                            f"embedded/{minilm.NAME}": {**free, "mode": "embedding"}})
