"""`abo-embedded`, an lm-eval model over an embedded GGUF: `--model abo-embedded --model_args model=gemma-3-270m`.

Importing this module registers the model with lm-eval; the target loader and `lm-eval-abo run` import it
for that reason.
"""

from __future__ import annotations

import lm_eval.models  # noqa: F401  (built-in models first: registering before this breaks get_model)
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from lm_eval_abo.embedded import llama
from lm_eval_abo.embedded.models import DEFAULT_TARGET, model_path
from lm_eval_abo.infra.errors import AboError


@register_model("abo-embedded")
class EmbeddedLM(TemplateLM):
    """lm-eval model over an embedded GGUF: `--model abo-embedded --model_args model=gemma-3-270m`."""

    # what lm-eval passes every backend, whether the user set it or not
    HARNESS_ARGS = frozenset({"batch_size", "max_batch_size", "device"})

    def __init__(self, model: str = DEFAULT_TARGET, n_ctx: int = 4096, seed: int = 0, **others):
        unknown = sorted(set(others) - self.HARNESS_ARGS)
        if unknown:  # a typo would otherwise run the default model without a word
            raise AboError(f"--model abo-embedded: unknown model_args {', '.join(unknown)}; known: model, n_ctx, seed")
        super().__init__()
        self.name = model
        self.seed = int(seed)
        self.llm = llama.load(model, int(n_ctx))

    @property
    def eot_token_id(self) -> int:
        return self.llm.token_eos()

    @property
    def prefix_token_id(self) -> int:
        return self.llm.token_bos()

    @property
    def tokenizer_name(self) -> str:
        return self.name

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.llm.tokenize(string.encode("utf-8"), add_bos=add_special_tokens is not False, special=True)

    def _logprobs_of(self, tokens: list[int], first_scored: int) -> tuple[float, bool]:
        """Sum of log p(token) for tokens[first_scored:], and whether each was the greedy choice.

        Scores one token at a time from the last-position logits, so the context needs no per-token
        logits buffer (gemma's 262k vocabulary would make that gigabytes); a shared prefix with the
        previous request is reused from llama.cpp's KV cache."""
        import llama_cpp
        import numpy as np

        llm = self.llm
        cached = list(llm.input_ids[: llm.n_tokens])
        common = 0
        while common < min(len(cached), first_scored - 1) and cached[common] == tokens[common]:
            common += 1
        llm.n_tokens = common
        llm.eval(tokens[common:first_scored])
        total, greedy = 0.0, True
        for i in range(first_scored, len(tokens)):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
            shifted = logits - logits.max()
            total += float(shifted[tokens[i]] - np.log(np.exp(shifted).sum()))
            greedy = greedy and int(logits.argmax()) == tokens[i]
            if i + 1 < len(tokens):
                llm.eval([tokens[i]])
        return total, greedy

    def _fresh(self) -> None:
        """Forget the prompts served before this pass. llama.cpp reuses the cached prefix of the previous
        prompt, and a prompt evaluated in two pieces can give a slightly different reply than in one; from
        an empty cache, a pass's replies depend on its own requests alone (as on a freshly started server)."""
        llama.on_llama_thread(self.llm.reset)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        from tqdm import tqdm

        self._fresh()
        results = []
        for _, context_enc, continuation_enc in tqdm(requests, disable=disable_tqdm, desc="Scoring"):
            tokens = (context_enc + continuation_enc)[-self.llm.n_ctx() :]
            first = max(1, len(tokens) - len(continuation_enc))
            results.append(llama.on_llama_thread(self._logprobs_of, tokens, first))
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        scores = []
        for (text,) in [r.args for r in requests]:
            windows = get_rolling_token_windows(
                token_list=self.tok_encode(text, add_special_tokens=False),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.llm.n_ctx() - 1,
                context_len=1,
            )
            pairs = [(("", ""), *make_disjoint_window(w)) for w in windows]
            scores.append(sum(lp for lp, _ in self._loglikelihood_tokens(pairs, disable_tqdm=True)))
        return scores

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled) completions, made as lm-eval's API backends ask a server for them: longest
        context first within each set of generation settings, from an empty cache, with the server's
        default repeat penalty. So a pass gives the replies `lm-eval-abo serve` gives the stock `lm_eval`
        (`--model local-completions`) for the same requests, and a run's test score reproduces there."""
        from lm_eval.models.utils import Collator
        from tqdm import tqdm

        self._fresh()
        order = Collator(list(enumerate(r.args for r in requests)), sort_fn=lambda item: -len(item[1][0]),
                         group_fn=lambda item: item[1][1], group_by="gen_kwargs")
        outputs: list[str] = [""] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc=f"Generating ({self.name})")
        for [(i, (context, gen_kwargs))] in order.get_batched(n=1, batch_fn=None):
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            temperature = float(gen_kwargs.get("temperature", 0.0)) if gen_kwargs.get("do_sample") else 0.0
            result = llama.complete(
                self.name, context, int(gen_kwargs.get("max_gen_toks", 256)), temperature,
                [until] if isinstance(until, str) else list(until), self.seed,
                repeat_penalty=float(gen_kwargs.get("repeat_penalty", llama.SERVER_REPEAT_PENALTY)),
            )
            outputs[i] = result["choices"][0]["text"]
            self.cache_hook.add_partial("generate_until", requests[i].args, outputs[i])  # kept if the run dies
            bar.update(1)
        bar.close()
        return outputs

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat through the model's own template; a chat that ends on an assistant message (a task's
        `gen_prefix`, for which lm-eval asks for no generation prompt) is left open for the model to continue
        (`chat.ContinuingFormatter`), as lm-eval's HF backend asks transformers to."""
        from lm_eval_abo.embedded.chat import ContinuingFormatter  # needs llama-cpp-python, loaded by now

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise AboError(f"{self.name} has no chat template: use it as a completion model (drop --apply_chat_template)")
        formatter = ContinuingFormatter(
            template=template,
            eos_token=self.llm.detokenize([self.eot_token_id]).decode("utf-8", "ignore"),
            bos_token=self.llm.detokenize([self.prefix_token_id]).decode("utf-8", "ignore"),
            add_generation_prompt=add_generation_prompt,
        )
        return formatter(messages=chat_history).prompt

    def get_model_info(self) -> dict:
        return {"embedded_model": self.name, "model_file": model_path(self.name).name}

