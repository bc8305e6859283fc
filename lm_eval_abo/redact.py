"""Keep secrets (API keys, tokens, passwords) out of every file and log line this package writes."""

from __future__ import annotations

import re

SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|authorization|auth|credential|private[_-]?key)", re.I)
MASK = "***"


def redact_args(args: dict) -> dict:
    """A copy of a key=value mapping with the values of secret-looking keys masked."""
    return {k: (MASK if SECRET_KEY.search(str(k)) and v not in (None, "") else v) for k, v in args.items()}


def redact_arg_string(args: str) -> str:
    """lm-eval's `k=v,k2=v2` model_args with the values of secret-looking keys masked."""
    parts = []
    for part in args.split(","):
        key, sep, value = part.partition("=")
        parts.append(f"{key}{sep}{MASK}" if sep and SECRET_KEY.search(key) and value else part)
    return ",".join(parts)
