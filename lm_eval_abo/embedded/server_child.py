"""The server process `serve.start` runs: `python -m lm_eval_abo.embedded.server_child on|off <llama_cpp.server
flags>` is llama-cpp-python's own OpenAI-compatible server, with the model loaded as every embedded model
is (llama.cpp's extra buffer types on or off, as the parent decided; a chat that ends on an assistant
message continued, not closed: `chat`), and ended with its parent: a server whose parent died (a crashed
test run, a killed command) would otherwise stay up for good."""

import ctypes
import signal
import sys

from lm_eval_abo.embedded.buffers import loading
from lm_eval_abo.embedded.chat import continuing

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent ends


def end_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent still stops its servers on every way out
        pass


def main(extra: str, server_args: list[str]) -> None:
    from llama_cpp.server.__main__ import main as serve

    end_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.argv = ["llama_cpp.server", *server_args]
    with loading(extra == "on"), continuing():  # the server loads its model at start, and serves until it stops
        serve()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
