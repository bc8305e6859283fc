"""Every call into an embedded model runs on one thread (no model needed to check it)."""

import threading
from concurrent.futures import ThreadPoolExecutor

from lm_eval_abo.embedded import llama


def test_callers_from_any_thread_share_the_llama_thread():
    """llama.cpp keeps an OpenMP team per calling thread, and a second team slows every token about 1.6x
    on a machine with no spare core: calls from the main thread, from workers (the optimizer's) and from
    the llama thread itself all run on that one thread."""
    with ThreadPoolExecutor(4) as pool:
        idents = set(pool.map(lambda _: llama.on_llama_thread(threading.get_ident), range(8)))
    idents.add(llama.on_llama_thread(threading.get_ident))
    nested = llama.on_llama_thread(llama.on_llama_thread, threading.get_ident)  # no deadlock
    assert idents == {nested} and nested != threading.get_ident()


def test_errors_reach_the_caller():
    def fail():
        raise ValueError("bad gguf")

    try:
        llama.on_llama_thread(fail)
    except ValueError as e:
        assert str(e) == "bad gguf"
    else:
        raise AssertionError("the error was swallowed")
