"""Meta-prompts: the jinja2 files in templates/, and the tagged blocks parsed from the replies.

Templates render in a sandbox with StrictUndefined. Untrusted text (documents, target outputs,
optimizer replies) only ever enters as a variable's value, and jinja2 never evaluates a value, so
`{{ 7*7 }}` inside an error message stays `{{ 7*7 }}`. Long inputs are shortened with the `cut_middle`
filter, which cuts the middle and keeps both ends: a question's answer options and a reply's final
answer sit at the end.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from lm_eval_abo.infra.files import bundled_dir


@cache
def _environment(directory: str) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(directory), undefined=StrictUndefined, keep_trailing_newline=False,
        trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )
    env.filters["numbered"] = lambda items: "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))
    env.filters["cut_middle"] = cut_middle
    return env


def cut_middle(text, length: int) -> str:
    """`text` cut down to `length` of its characters, the first and the last half of them, with the cut
    marked in between."""
    text = str(text)
    if len(text) <= length:
        return text
    head, tail = text[: (length + 1) // 2], text[len(text) - length // 2 :]
    return f"{head.rstrip()} [... {len(text) - length} characters cut ...] {tail.lstrip()}"


def templates_dir() -> Path:
    return bundled_dir("templates")


def render(name: str, **variables) -> list[dict]:
    """The chat messages of meta-prompt `name` (templates/<name>.j2): one user message."""
    return [{"role": "user", "content": text(name, **variables).strip()}]


def text(name: str, **variables) -> str:
    """Template `name` rendered as it is written (its final newline dropped), e.g. a grader's message."""
    return _environment(str(templates_dir())).get_template(f"{name}.j2").render(**variables)


@cache
def closure(name: str) -> tuple[str, ...]:
    """Meta-prompt `name` and every template it includes, by name (what rendering it loads)."""
    from jinja2 import meta

    env = _environment(str(templates_dir()))
    source = env.loader.get_source(env, f"{name}.j2")[0]
    found = [name]
    for included in sorted(meta.find_referenced_templates(env.parse(source))):
        found += [n for n in closure(included.removesuffix(".j2")) if n not in found]
    return tuple(found)


@cache
def template_sha256(name: str) -> str:
    return hashlib.sha256((templates_dir() / f"{name}.j2").read_bytes()).hexdigest()


def hashes(names) -> dict[str, str]:
    """name -> sha256 of each named meta-prompt file, in name order (what an artifact records)."""
    return {name: template_sha256(name) for name in sorted(names)}


def tagged(text: str, tag: str) -> list[str]:
    """The stripped contents of every <tag>...</tag> block (an unclosed last block counts too)."""
    found = [m.strip() for m in re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S | re.I)]
    last_open = text.lower().rfind(f"<{tag}>")
    if last_open != -1 and f"</{tag}>" not in text[last_open:].lower():
        found.append(text[last_open + len(tag) + 2 :].strip())  # a reply cut off by the token limit
    return [f for f in found if f]
