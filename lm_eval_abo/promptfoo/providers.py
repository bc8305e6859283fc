"""promptfoo provider ids and lm-eval model backends, both ways, and the generation settings.

Only mappings that keep the model and its generation settings are offered: OpenAI-compatible
completion and chat endpoints (OpenAI, OpenRouter, DeepSeek, Fireworks, Together, Perplexity, or any
server through a base URL), Anthropic messages, Ollama.
"""

from __future__ import annotations

import re

from lm_eval_abo.infra.errors import AboError

CHAT_BACKENDS = {"local-chat-completions", "openai-chat-completions", "anthropic-chat-completions"}
COMPLETION_BACKENDS = {"local-completions", "openai-completions", "abo-embedded"}
# promptfoo providers that are OpenAI chat endpoints at a fixed URL (promptfoo 0.120.0's base URL and key variable)
HOSTED_OPENAI = {
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "fireworks": ("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "togetherai": ("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "perplexity": ("https://api.perplexity.ai", "PERPLEXITY_API_KEY"),
}
SUPPORTED = ("openai:chat|completion (any apiBaseUrl), " + ", ".join(HOSTED_OPENAI)
             + ", anthropic[:messages], ollama:chat|completion, echo")


def without_credentials(text: str) -> str:
    """Text with every URL's `user:password@` part removed (a server URL may carry credentials)."""
    return re.sub(r"://[^/@,\s]+@", "://", text)


def _local(chat: bool, model: str, base: str, key_env: str | None = None) -> dict:
    endpoint = f"{base}/chat/completions" if chat else f"{base}/completions"
    return {"model": "local-chat-completions" if chat else "local-completions", "chat": chat, "key_env": key_env,
            "model_args": f"model={model},base_url={endpoint},tokenizer_backend=None,tokenized_requests=False"}


def to_lm_eval(provider_id: str, config: dict) -> dict | None:
    """The lm-eval backend for a promptfoo provider id ({"model", "model_args", "chat", "key_env"}),
    or None if there is no faithful one."""
    kind, _, rest = provider_id.partition(":")
    base = without_credentials(str(config.get("apiBaseUrl") or config.get("apiHost") or "")).rstrip("/")
    if base and not base.startswith("http"):
        base = f"https://{base}/v1"
    if kind == "openai":
        mode, _, model = rest.partition(":")
        if mode not in ("chat", "completion"):
            mode, model = "chat", rest
        if not model:
            return None
        chat = mode == "chat"
        if base:
            return _local(chat, model, base)
        return {"model": "openai-chat-completions" if chat else "openai-completions", "model_args": f"model={model}",
                "chat": chat, "key_env": "OPENAI_API_KEY"}
    if kind in HOSTED_OPENAI and rest:
        url, key_env = HOSTED_OPENAI[kind]
        mode, _, model = rest.partition(":")
        if kind == "togetherai" and mode in ("chat", "completion"):
            return _local(mode == "chat", model, base or url, key_env) if model else None
        return _local(True, rest, base or url, key_env)
    if kind == "anthropic" and rest and not rest.startswith("completion:"):
        model = rest.split(":", 1)[1] if rest.startswith("messages:") else rest
        return {"model": "anthropic-chat-completions", "model_args": f"model={model}", "chat": True, "key_env": "ANTHROPIC_API_KEY"}
    if kind == "ollama":
        mode, _, model = rest.partition(":")
        host = base or "http://localhost:11434"
        if mode in ("chat", "completion") and model:
            mapped = _local(mode == "chat", model, f"{host}/v1")
            mapped["model_args"] = mapped["model_args"].replace(",tokenized_requests=False", "") if mode == "chat" else mapped["model_args"]
            return mapped
    if provider_id == "echo":
        return {"chat": False}
    return None


GRADERS = "openai:chat (any apiBaseUrl), " + ", ".join(HOSTED_OPENAI) + ", anthropic[:messages], ollama:chat"


def _id_and_config(provider) -> tuple[str | None, dict]:
    """A promptfoo provider given as an id or as `{id, config}`: (its id, its config)."""
    if isinstance(provider, str):
        return provider, {}
    return (provider.get("id"), provider.get("config") or {}) if isinstance(provider, dict) else (None, {})


def to_litellm(provider) -> dict | None:
    """A promptfoo grading provider (an id, `{id, config}`, or `{text: ...}` by kind) as a litellm grader:
    {"model", "api_base"?, "key_env"?, "temperature"?, "max_tokens"?}, or None if there is no faithful one."""
    if isinstance(provider, dict) and "id" not in provider and provider.get("text"):
        provider = provider["text"]
    pid, config = _id_and_config(provider)
    if not isinstance(pid, str):
        return None
    kind, _, rest = pid.partition(":")
    mode, _, model = rest.partition(":")
    base = without_credentials(str(config.get("apiBaseUrl") or config.get("apiHost") or "")).rstrip("/")
    if base and not base.startswith("http"):
        base = f"https://{base}/v1"
    found = None
    if kind == "openai" and rest and mode not in ("completion", "embedding", "embeddings", "moderation", "assistant"):
        found = {"model": f"openai/{model if mode == 'chat' else rest}", "key_env": config.get("apiKeyEnvar")}
    elif kind in HOSTED_OPENAI and rest and mode != "completion":
        url, key_env = HOSTED_OPENAI[kind]
        found = {"model": f"openai/{model if kind == 'togetherai' and mode == 'chat' else rest}", "api_base": url,
                 "key_env": key_env}
    elif kind == "anthropic" and rest and mode != "completion":
        found = {"model": f"anthropic/{model if mode == 'messages' else rest}"}
    elif kind == "ollama" and mode == "chat" and model:
        found = {"model": f"ollama_chat/{model}", "api_base": base or "http://localhost:11434"}
    if found is None:
        return None
    if base:
        found["api_base"] = base
    found.update({k: config[k] for k in ("temperature", "max_tokens") if config.get(k) is not None})
    return {k: v for k, v in found.items() if v is not None}


EMBEDDERS = "openai:embedding[s]:<model> (any apiBaseUrl), " + ", ".join(f"{k}:embedding[s]:<model>" for k in HOSTED_OPENAI)


def to_embedder(provider) -> dict | None:
    """A promptfoo embedding provider (an id, `{id, config}`, or `{embedding: ...}` by kind) as a litellm
    embedding model: {"model", "api_base"?, "key_env"?}; {} where it names no embedding provider (promptfoo
    then embeds with its default); None where it names one with no faithful litellm equivalent."""
    if isinstance(provider, dict) and "id" not in provider:
        if not provider.get("embedding"):
            return {}
        provider = provider["embedding"]
    pid, config = _id_and_config(provider)
    if not isinstance(pid, str):
        return None
    kind, _, rest = pid.partition(":")
    mode, _, model = rest.partition(":")
    if mode not in ("embedding", "embeddings"):
        return {} if kind in ("openai", *HOSTED_OPENAI, "anthropic", "ollama") else None
    base = without_credentials(str(config.get("apiBaseUrl") or config.get("apiHost") or "")).rstrip("/")
    if base and not base.startswith("http"):
        base = f"https://{base}/v1"
    if kind == "openai":
        found = {"model": f"openai/{model or 'text-embedding-3-large'}", "key_env": config.get("apiKeyEnvar")}
    elif kind in HOSTED_OPENAI and model:
        url, key_env = HOSTED_OPENAI[kind]
        found = {"model": f"openai/{model}", "api_base": url, "key_env": key_env}
    else:
        return None
    if base:
        found["api_base"] = base
    return {k: v for k, v in found.items() if v is not None}


# provider config keys that only say how to reach the endpoint
CONNECTION_KEYS = {"apiKey", "apiKeyEnvar", "apiBaseUrl", "apiHost", "organization", "headers", "cost", "label",
                   "timeout", "maxRetries"}
PASSED_THROUGH = ("top_p", "seed", "presence_penalty", "frequency_penalty")


def generation(provider_id: str, chat: bool, config: dict, problems: list[str]) -> dict:
    """lm-eval generation_kwargs with the settings promptfoo would send: the config's, else promptfoo
    0.120.0's defaults (max_tokens 1024; no stop for chat, <|im_end|> and <|endoftext|> for completion
    endpoints), never lm-eval's own defaults (a stop at the first blank line, 256 tokens)."""
    ollama = provider_id.startswith("ollama:")
    max_tokens = config.get("num_predict") if ollama else config.get("max_tokens")
    stop = config.get("stop")
    if stop is None and provider_id.startswith(("openai:completion:", "togetherai:completion:")):
        stop = ["<|im_end|>", "<|endoftext|>"]  # promptfoo's OpenAiCompletionProvider default
    temperature = float(config.get("temperature") or 0.0)
    kwargs = {"until": [stop] if isinstance(stop, str) else list(stop or []), "max_gen_toks": int(max_tokens or 1024),
              "do_sample": temperature > 0, "temperature": temperature}
    for key in PASSED_THROUGH:
        if config.get(key) is not None:
            kwargs[key] = config[key]
    if config.get("response_format") is not None and chat:  # promptfoo's completion providers do not send it
        kwargs["response_format"] = config["response_format"]
    if isinstance(config.get("passthrough"), dict):
        kwargs.update(config["passthrough"])
    known = CONNECTION_KEYS | set(PASSED_THROUGH) | {"max_tokens", "num_predict", "temperature", "stop", "response_format", "passthrough"}
    extra = sorted(set(config) - known)
    if extra:
        problems.append(f"provider {provider_id} settings {', '.join(extra)}")
    return kwargs


def read_providers(given, problems: list[str], notes: list[str]) -> tuple[dict, dict]:
    """({"id", "config", "prompts"} of the first provider, its lm-eval backend); the others are named
    in one note, since the import runs one target."""
    if given is None:
        return {}, {}
    if isinstance(given, str):
        given = [given]
    elif isinstance(given, dict):  # one provider, or a map {id: {config}}
        given = [given] if "id" in given else [{"id": k, **(v or {})} for k, v in given.items()]
    entries = []
    for entry in given:
        if isinstance(entry, str):
            entries.append({"id": entry, "config": {}})
        elif isinstance(entry, dict) and isinstance(entry.get("id"), str):
            entries.append({"id": entry["id"], "config": entry.get("config") or {}, "prompts": entry.get("prompts"),
                            "label": entry.get("label")})
        else:
            entries.append({"id": str(entry), "config": {}})
    if not entries:
        return {}, {}
    first = entries[0]
    mapped = to_lm_eval(first["id"], first["config"])
    if mapped is None:
        problems.append(f"provider {first['id']} (mapped: {SUPPORTED})")
        mapped = {}
    if len(entries) > 1:
        notes.append(f"providers: the task's target is {first['id']}; not imported: " + ", ".join(e["id"] for e in entries[1:]))
    return first, mapped


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
