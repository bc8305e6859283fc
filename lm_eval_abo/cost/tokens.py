"""Counting tokens.

The target's, as it serves a pass: lm-eval's API backends (`local-completions`, `local-chat-completions`,
`openai-*`, `litellm`) and `gguf` report the server's own `usage`, read from the raw replies on their way
to lm-eval's parsers; local backends (`hf`, `vllm`, `abo-embedded`, any TemplateLM) count with the model's
tokenizer (`tok_encode`): the prompt and the generated text. Anything else, or a server that sends no
`usage` to a backend without a tokenizer, is estimated at 4 characters a token and marked as estimated.

Before any model is loaded (the projection), the target's tokenizer is loaded alone where that is cheap
(the embedded model's vocabulary, a Hugging Face tokenizer already on disk, tiktoken for OpenAI's models);
the optimizer's meta-prompts with an embedded model's own vocabulary, or else through litellm.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from lm_eval_abo.embedded import minilm
from lm_eval_abo.embedded.models import DEFAULT_TARGET

CHARS_PER_TOKEN = 4
LISTENER = "_abo_usage_listener"  # set on an API model instance: where the replies' `usage` goes


def estimate(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def _text(context) -> str:
    """A request's context as text (a chat request is lm-eval's JsonChatStr)."""
    return str(getattr(context, "prompt", context))


class TargetMeter:
    """The tokens of every request the target model serves, counted as well as the backend allows."""

    def __init__(self, lm):
        from lm_eval.api.model import TemplateLM
        from lm_eval.models.api_models import TemplateAPI
        from lm_eval.models.gguf import GGUFLM

        self.lm = lm
        self.served: list[dict | None] = []  # the `usage` of each raw server reply of the current pass
        self.listens = isinstance(lm, (TemplateAPI, GGUFLM))
        if isinstance(lm, TemplateAPI):
            for name in ("parse_generations", "parse_logprobs"):
                _listen(lm, name, lambda args, kwargs, result: kwargs.get("outputs", args[0] if args else None))
        elif isinstance(lm, GGUFLM):
            _listen(lm, "gguf_completion", lambda args, kwargs, result: result)
        api_tokenizer = isinstance(lm, TemplateAPI) and getattr(lm, "tokenizer_backend", None) in ("huggingface", "tiktoken")
        local = isinstance(lm, TemplateLM) and not isinstance(lm, TemplateAPI)
        self.count: Callable[[str, bool], int] | None = (
            (lambda text, special=True: len(lm.tok_encode(text) if special else lm.tok_encode(text, add_special_tokens=False)))
            if local or api_tokenizer else None
        )

    def start(self) -> None:
        """Before a pass: the replies' `usage` comes here (another meter on the same model may have listened)."""
        self.served.clear()
        if self.listens:
            setattr(self.lm, LISTENER, self.served.append)

    def tokens(self, kind: str, requests, results) -> tuple[int, int, bool]:
        """(prompt tokens, completion tokens, estimated) of a pass just served."""
        if self.listens and self.served and all(self.served):
            return (sum(u.get("prompt_tokens") or 0 for u in self.served),
                    sum(u.get("completion_tokens") or 0 for u in self.served), False)
        count = self.count or (lambda text, special=True: estimate(text))
        prompt = completion = 0
        for request, result in zip(requests, results):
            args = request.args
            if kind == "generate_until":
                prompt += count(_text(args[0]))
                completion += count(str(result), False) if result else 0
            elif kind == "loglikelihood":
                prompt += count(_text(args[0])) + count(_text(args[1]), False)
            else:
                prompt += count(_text(args[0]))
        return prompt, completion, self.count is None


def _listen(lm, name: str, outputs_of) -> None:
    """Wrap `lm.<name>` on the instance so each raw reply's `usage` reaches the instance's listener
    (once per instance: a second meter on the same model takes the listener over at each pass)."""
    original = getattr(lm, name)
    if getattr(original, "_abo_listened", False):
        return

    def listened(*args, **kwargs):
        result = original(*args, **kwargs)
        listener = getattr(lm, LISTENER, None)
        outputs = outputs_of(args, kwargs, result)
        if listener is not None and outputs is not None:
            for reply in outputs if isinstance(outputs, list) else [outputs]:
                usage = reply.get("usage") if isinstance(reply, dict) else None
                listener(usage if isinstance(usage, dict) and "prompt_tokens" in usage else None)
        return result

    listened._abo_listened = True
    setattr(lm, name, listened)


# --- before any model is loaded: the projection -----------------------------------------------------


@cache
def _embedded_vocabulary(name: str):
    """The embedded model's tokenizer alone (llama.cpp's vocabulary, no weights)."""
    from lm_eval_abo.embedded.llama import open_model

    return open_model(name, vocab_only=True)


def _hugging_face_tokenizer(name: str):
    """A Hugging Face tokenizer already on disk, or None."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:  # not on disk, or not a Hugging Face name
        return None


def target_counter(model: str, args: dict) -> tuple[Callable[[str], int], bool]:
    """(count, exact): how the projection counts the tokens of the target (`--model`, its parsed
    `--model_args`), without loading the model."""
    if model == "abo-embedded":
        vocabulary = _embedded_vocabulary(args.get("model", DEFAULT_TARGET))
        return (lambda text: len(vocabulary.tokenize(text.encode("utf-8"), add_bos=True, special=True))), True
    name = args.get("tokenizer") or args.get("pretrained") or args.get("model")
    hugging_face = str(args.get("tokenizer_backend", "huggingface")) in ("huggingface", "auto")
    tokenizer = _hugging_face_tokenizer(name) if isinstance(name, str) and hugging_face else None
    if tokenizer is not None:
        return (lambda text: len(tokenizer(text).input_ids)), True
    if isinstance(name, str) and (model.startswith("openai") or model.startswith("litellm")):
        import litellm

        return (lambda text: litellm.token_counter(model=name, text=text)), True
    return estimate, False


def optimizer_tokens(model: str, messages: list[dict]) -> int:
    """An optimizer call's prompt tokens: an embedded model's with its own vocabulary and chat template,
    any other as litellm counts them for `model` (its tokenizer where litellm has one, else OpenAI's cl100k)."""
    if model.startswith("embedded/"):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        vocabulary = _embedded_vocabulary(model.split("/", 1)[1])
        template = vocabulary.metadata.get("tokenizer.chat_template")
        text = (Jinja2ChatFormatter(template, eos_token="", bos_token="")(messages=messages).prompt if template
                else "\n\n".join(m["content"] for m in messages) + "\n\n")
        return len(vocabulary.tokenize(text.encode("utf-8"), add_bos=True, special=True))
    import litellm

    return litellm.token_counter(model=model, messages=messages)


def embedding_tokens(model: str, text: str) -> int:
    """The tokens of `text` for an embedding model: the offline model's own WordPiece tokens, else as litellm
    counts them for `model` (OpenAI's cl100k where litellm knows no tokenizer)."""
    if model == f"embedded/{minilm.NAME}":
        return minilm.count_tokens(text)
    import litellm

    return litellm.token_counter(model=model, text=text)
