"""llama.cpp in this process: every call on one thread, each model loaded once, completions and chats.

llama.cpp runs each step on an OpenMP team of threads, one team per thread that calls it. Once two
teams exist (the target called from the main thread, the optimizer from a worker), libgomp counts
more threads than cores and stops spinning between steps, and every token costs about 1.6 times as
much (measured on 2 cores: 4 optimizer calls took 13.4 s, and 21.4 s after the main thread had run
the target). So every call into a model runs on one thread, which also serialises them, as a
llama.cpp context needs.
"""

from __future__ import annotations

import atexit
import ctypes
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

from lm_eval_abo.embedded import buffers
from lm_eval_abo.embedded.models import INSTALL_HINT, N_THREADS, model_info, model_path
from lm_eval_abo.infra.errors import AboError

_llama_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama.cpp",
                                   initializer=lambda: setattr(_on_it, "llama", True))
_on_it = threading.local()


def on_llama_thread(function, *args, **kwargs):
    """`function(*args, **kwargs)` run on the one thread that calls llama.cpp, once it is free."""
    if getattr(_on_it, "llama", False):
        return function(*args, **kwargs)
    return _llama_thread.submit(function, *args, **kwargs).result()


_log_listeners: list = []  # where llama.cpp's whole log goes while `captured_log` runs


@cache
def _log_errors_only():
    """A llama.cpp log callback that keeps errors only (its warnings about caches are noise here), and
    hands every line to the listeners of `captured_log`. Cached: ctypes must keep the callback alive for
    as long as llama.cpp may call it."""
    import llama_cpp

    ggml_log_level_error = 4  # ggml's enum: none, debug, info, warn, error, cont

    @llama_cpp.llama_log_callback
    def callback(level, text, user_data):
        decoded = text.decode("utf-8", "replace")
        if level == ggml_log_level_error:
            sys.stderr.write(decoded)
        for listener in _log_listeners:
            listener(decoded)

    return callback


@contextmanager
def captured_log():
    """llama.cpp's log (every level) of what runs inside the block, as a list of lines filled in."""
    lines: list[str] = []
    _log_listeners.append(lines.append)
    try:
        yield lines
    finally:
        _log_listeners.remove(lines.append)


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
    llm = on_llama_thread(open_model, name, n_ctx)
    atexit.register(llm.close)  # an open Llama prints a traceback from __del__ at interpreter exit
    return llm


def open_model(name: str, n_ctx: int = 4096, vocab_only: bool = False):
    """A new `llama_cpp.Llama` of an embedded model, loaded as every model of the project is: with
    llama.cpp's extra buffer types only where `buffers` allows them, after a test run in a child process
    (weights are not loaded for `vocab_only`, so nothing can crash then), and a chat template that continues
    a final assistant message (`chat`)."""
    path = model_path(name)
    try:
        import llama_cpp

        from lm_eval_abo.embedded import chat  # built on llama-cpp-python's formatter
    except ImportError:
        raise AboError(f"llama-cpp-python is not installed; {INSTALL_HINT}") from None
    extra = buffers.use_extra_buffers()
    if not vocab_only:
        buffers.checked(name, path, extra)
    llama_cpp.llama_log_set(_log_errors_only(), ctypes.c_void_p(0))
    try:
        with buffers.loading(extra), chat.continuing():
            return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=N_THREADS, vocab_only=vocab_only,
                                   verbose=False)
    except (ValueError, RuntimeError) as e:
        raise AboError(f"cannot load {path}: {e}; delete the file and run again to re-assemble it") from None


# What llama-cpp-python's server applies to a completion request that does not say (lm-eval's API backends
# do not): the target decodes the same in-process and behind `lm-eval-abo serve`.
SERVER_REPEAT_PENALTY = 1.1


def complete(name: str, prompt: str, max_tokens: int, temperature: float = 0.0, stop=None, seed: int = 0,
             repeat_penalty: float = 1.0) -> dict:
    """A plain completion; returns llama.cpp's OpenAI-style dict (text and usage)."""
    return on_llama_thread(
        load(name).create_completion, prompt=prompt, max_tokens=max_tokens, temperature=temperature, stop=stop or [],
        seed=seed, repeat_penalty=repeat_penalty,
    )


# Small chat models loop without it: a Qwen-0.5B paraphrase ran to a 300-token cap at 1.0, and
# ended after 23 tokens at 1.1.
CHAT_REPEAT_PENALTY = 1.1


def chat(name: str, messages: list[dict], max_tokens: int, temperature: float = 0.0, stop=None, seed: int = 0,
         repeat_penalty: float = CHAT_REPEAT_PENALTY) -> dict:
    """A chat completion through the model's own chat template (or plain text for a base model)."""
    if not model_info(name).chat:
        prompt = "\n\n".join(m["content"] for m in messages) + "\n\n"
        result = complete(name, prompt, max_tokens, temperature, stop, seed, repeat_penalty)
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
