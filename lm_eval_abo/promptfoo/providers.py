"""promptfoo provider ids and lm-eval model backends, both ways.

Only mappings that keep the model and its generation settings are offered: OpenAI-compatible
completion and chat endpoints (hosted, or any server through a base URL), Anthropic messages, Ollama.
"""

from __future__ import annotations

import re

from lm_eval_abo.infra.errors import AboError

CHAT_BACKENDS = {"local-chat-completions", "openai-chat-completions"}
COMPLETION_BACKENDS = {"local-completions", "openai-completions", "abo-embedded"}
SUPPORTED = "openai:chat|completion, anthropic:messages, ollama, echo"


def without_credentials(text: str) -> str:
    """Text with every URL's `user:password@` part removed (a server URL may carry credentials)."""
    return re.sub(r"://[^/@,\s]+@", "://", text)



def to_lm_eval(provider_id: str, config: dict) -> dict | None:
    """The lm-eval backend for a promptfoo provider id, or None if there is no faithful one."""
    kind, _, rest = provider_id.partition(":")
    base = without_credentials(str(config.get("apiBaseUrl") or config.get("apiHost") or "")).rstrip("/")
    if kind == "openai":
        mode, _, model = rest.partition(":")
        if mode not in ("chat", "completion"):
            mode, model = "chat", rest
        if not model:
            return None
        chat = mode == "chat"
        if base:
            if not base.startswith("http"):
                base = f"https://{base}/v1"
            endpoint = f"{base}/chat/completions" if chat else f"{base}/completions"
            backend = "local-chat-completions" if chat else "local-completions"
            return {"model": backend, "model_args": f"model={model},base_url={endpoint},tokenizer_backend=None,tokenized_requests=False"}
        return {"model": "openai-chat-completions" if chat else "openai-completions", "model_args": f"model={model}"}
    if kind == "anthropic" and rest.startswith("messages:"):
        return {"model": "anthropic-chat-completions", "model_args": f"model={rest.split(':', 1)[1]}"}
    if kind == "ollama":
        mode, _, model = rest.partition(":")
        host = base or "http://localhost:11434"
        if mode == "chat":
            return {"model": "local-chat-completions", "model_args": f"model={model},base_url={host}/v1/chat/completions,tokenizer_backend=None"}
        if mode == "completion":
            return {"model": "local-completions", "model_args": f"model={model},base_url={host}/v1/completions,tokenizer_backend=None,tokenized_requests=False"}
    if provider_id == "echo":
        return {}
    return None


def _base_url(url: str) -> str:
    """An endpoint URL as promptfoo's apiBaseUrl: without the route and any user:password."""
    return re.sub(r"/(chat/)?completions/?$", "", without_credentials(url).split("?")[0])


def from_lm_eval(target: dict, gen_kwargs: dict, chat: bool, provider_id: str | None = None, api_base: str | None = None,
                 api_key_env: str | None = None) -> dict:
    """An lm-eval target ({"model", "model_args"}) as a promptfoo provider with lm-eval's generation
    settings (the same temperature, max tokens and stops), unless a provider id is given."""
    from lm_eval.utils import simple_parse_args_string

    backend = target.get("model", "")
    args = simple_parse_args_string(target.get("model_args") or "")
    base = api_base
    if provider_id:
        pid = provider_id
    else:
        if backend not in CHAT_BACKENDS | COMPLETION_BACKENDS:
            raise AboError(f"no promptfoo provider is known for the lm-eval model {backend or '(none)'}; "
                           "pass --provider (e.g. openai:chat:gpt-4o-mini) and --api-base for an OpenAI-compatible server")
        name = args.get("model") or args.get("pretrained")
        if not name:
            raise AboError("the artifact's target has no model name in its model_args; pass --provider")
        if backend.startswith("local-") and not base and args.get("base_url"):
            base = _base_url(str(args["base_url"]))
        pid = f"openai:{'chat' if chat else 'completion'}:{name}"
    gen = dict(gen_kwargs)
    until = gen.pop("until", None)
    gen.pop("do_sample", None)  # lm-eval's API backends send the temperature as it is
    max_tokens = gen.pop("max_tokens") if "max_tokens" in gen else gen.pop("max_gen_toks", 256)
    config = {"temperature": float(gen.pop("temperature", 0.0) or 0.0), "max_tokens": int(max_tokens)}
    if until:
        config["stop"] = [until] if isinstance(until, str) else list(until)
    if base:
        config["apiBaseUrl"] = base
    if api_key_env:
        config["apiKeyEnvar"] = api_key_env
    if gen:
        config["passthrough"] = gen  # lm-eval sends the remaining generation settings as they are
    return {"id": pid, "label": f"{backend or 'target'}:{args.get('model', pid)}", "config": config}
