"""The test run of `buffers.probe`, in a child process: `python -m lm_eval_abo.embedded.probe MODEL.gguf on|off`
loads the model with llama.cpp's extra buffer types on or off and decodes a few tokens. A native crash
kills this process by a signal, which the parent reads from its exit status."""

import sys

from lm_eval_abo.embedded.buffers import loading
from lm_eval_abo.embedded.models import N_THREADS


def main(path: str, extra: str) -> None:
    import llama_cpp

    with loading(extra == "on"):
        llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=N_THREADS, verbose=False)
    llm.create_completion("Q: 2+2=?\nA:", max_tokens=4, temperature=0.0)
    llm.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
