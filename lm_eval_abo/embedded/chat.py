"""Chat templates that continue a final assistant message.

lm-eval ends a chat on an assistant message when a task opens the answer for the model (`gen_prefix`,
ABO's "Step 1:"). lm-eval's HF backend then asks transformers to continue that message
(`continue_final_message`). llama-cpp-python's formatter instead closes it and opens a new assistant
turn, so the model sees a finished answer: in-process the embedded chat models then answered nothing
(60 of 60 empty replies), and behind llama-cpp-python's server the model started a new turn that ignored
the prefix. `ContinuingFormatter` renders such a chat without a generation prompt and cuts it right
after the final message's text, in the process and behind `lm-eval-abo serve` alike.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

from llama_cpp import llama_chat_format
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from lm_eval_abo.infra.errors import AboError


def continued(rendered: str, final: str) -> str:
    """A rendered chat cut right after the text of its final message, which the model then continues. A
    template may trim the message's trailing white space; the cut keeps what the template kept."""
    text = final.strip()
    at = rendered.rfind(text) if text else -1
    if at < 0:
        raise AboError("the chat template does not show the final assistant message, so the model cannot continue it")
    kept = final.lstrip()
    return rendered[: at + (len(kept) if rendered.startswith(kept, at) else len(text))]


class ContinuingFormatter(Jinja2ChatFormatter):
    """llama-cpp-python's Jinja2 chat formatter, except that a chat ending on an assistant message is left
    open at the end of that message's text."""

    def __init__(self, template: str, eos_token: str, bos_token: str, add_generation_prompt: bool = True,
                 stop_token_ids=None):
        super().__init__(template, eos_token, bos_token, add_generation_prompt, stop_token_ids)
        self._open = Jinja2ChatFormatter(template, eos_token, bos_token, False, stop_token_ids)

    def __call__(self, *, messages, **kwargs):
        if not messages or messages[-1]["role"] != "assistant":
            return super().__call__(messages=messages, **kwargs)
        response = self._open(messages=messages, **kwargs)
        return replace(response, prompt=continued(response.prompt, messages[-1]["content"] or ""))


@contextmanager
def continuing():
    """Within the block, a `llama_cpp.Llama` that takes its chat template from its GGUF file formats chats
    with `ContinuingFormatter` (`Llama()` builds its handler from `llama_chat_format.Jinja2ChatFormatter`).
    Loads are serialised by the caller."""
    llama_chat_format.Jinja2ChatFormatter = ContinuingFormatter
    try:
        yield
    finally:
        llama_chat_format.Jinja2ChatFormatter = Jinja2ChatFormatter
