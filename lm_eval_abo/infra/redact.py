"""Keep secrets (API keys, tokens, passwords) out of every file and log line this package writes.

Two layers: structured data (model_args, optimizer args, task metadata) is masked by key name before
it is written; and the text a command prints (its own lines, lm-eval's and litellm's logs, error
messages) has every known secret *value* replaced, since other libraries format arguments into text.
"""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager

# A key names a secret when its last word does: api_key, OPENAI_API_KEY, auth_token, HF_TOKEN,
# client_secret, Authorization, headers. Not tokenizer_backend or max_tokens.
SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(?:api[_\-]?key|key|token|secret|password|passwd|authorization|auth|credentials?|headers?)$", re.I
)
MASK = "***"
MIN_SECRET_CHARS = 8  # shorter values (`api_key=x` for local servers) would mask ordinary text


def is_secret_key(key) -> bool:
    return bool(SECRET_KEY.search(str(key)))


def redact_args(args: dict) -> dict:
    """A copy of a key=value mapping with the values of secret-looking keys masked."""
    return {k: (MASK if is_secret_key(k) and v not in (None, "") else v) for k, v in args.items()}


def redact_arg_string(args: str) -> str:
    """lm-eval's `k=v,k2=v2` model_args with the values of secret-looking keys masked."""
    parts = []
    for part in args.split(","):
        key, sep, value = part.partition("=")
        parts.append(f"{key}{sep}{MASK}" if sep and is_secret_key(key) and value else part)
    return ",".join(parts)


def redact_model_args(args):
    """model_args as lm-eval keeps them (a dict, or a `k=v` string) with secret values masked."""
    return redact_args(args) if isinstance(args, dict) else redact_arg_string(str(args or ""))


def redacting_tracker(base):
    """A subclass of lm-eval's EvaluationTracker whose results file has secrets masked: lm-eval copies
    model_args verbatim into `config.model_args`, and model_args and --metadata into every task's
    `configs.<task>.metadata`."""

    if getattr(base, "redacts_model_args", False):
        return base

    class RedactingTracker(base):
        redacts_model_args = True

        def save_results_aggregated(self, results=None, samples=None):
            if results and "model_args" in (results.get("config") or {}):
                config = {**results["config"], "model_args": redact_model_args(results["config"]["model_args"])}
                results = {**results, "config": config}
            if results and results.get("configs"):
                configs = {task: {**c, "metadata": redact_args(c["metadata"])} if isinstance(c.get("metadata"), dict) else c
                           for task, c in results["configs"].items()}
                results = {**results, "configs": configs}
            super().save_results_aggregated(results=results, samples=samples)

    return RedactingTracker


def flag_values(argv: list[str], flags) -> list[str]:
    """The values given to `flags` (`--flag v1 v2` or `--flag=v`), without parsing the command."""
    found, taking = [], False
    for arg in argv:
        name, eq, value = arg.partition("=")
        if arg.startswith("-"):
            taking = arg in flags
            if eq and name in flags:
                found.append(value)
        elif taking:
            found.append(arg)
    return found


def _pairs(args) -> dict:
    """A mapping from a dict, a JSON object string or a `k=v,k2=v2` string (never fails)."""
    if isinstance(args, dict):
        return args
    text = str(args or "").strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
            return value if isinstance(value, dict) else {}
        except json.JSONDecodeError:
            pass
    return dict(part.partition("=")[::2] for part in text.split(",") if "=" in part)


def secret_values(*sources, environ=None) -> set[str]:
    """The values to hide: those of secret-looking keys in the given mappings or arg strings, and
    of secret-looking environment variables (all of os.environ unless `environ` is given)."""
    environ = os.environ if environ is None else environ
    found = set()
    for mapping in [*map(_pairs, sources), environ]:
        for key, value in mapping.items():
            if is_secret_key(key):
                found |= _leaf_strings(value)
    return {v for v in found if len(v) >= MIN_SECRET_CHARS}


def _leaf_strings(value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*map(_leaf_strings, value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*map(_leaf_strings, value)) if value else set()
    text = str(value).strip()
    # a header value such as "Bearer sk-..." also leaks as its last word
    return {text, text.split()[-1]} if text else set()


def scrub(text: str, secrets) -> str:
    """`text` with every secret value replaced by the mask (longest first, so no part survives)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class _ScrubbingStream:
    """A text stream that masks secrets before they reach the real one. A secret split across two
    writes is still caught: the end of an unfinished line, as long as a secret, is held back until
    the next write or flush (which progress bars call after every update)."""

    def __init__(self, stream, secrets: set[str]):
        self._stream, self._secrets = stream, secrets
        self._hold = max(map(len, secrets)) - 1
        self._pending = ""

    def write(self, text: str) -> int:
        data = scrub(self._pending + text, self._secrets)
        cut = max(len(data) - self._hold, data.rfind("\n") + 1)  # secrets hold no newline
        self._stream.write(data[:cut])
        self._pending = data[cut:]
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name):  # encoding, fileno, isatty, buffer ...
        return getattr(self._stream, name)


@contextmanager
def scrubbed_output(secrets: set[str]):
    """Everything printed to stdout and stderr inside the block, by anyone, with secrets masked."""
    if not secrets:
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ScrubbingStream(sys.stdout, secrets), _ScrubbingStream(sys.stderr, secrets)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved
