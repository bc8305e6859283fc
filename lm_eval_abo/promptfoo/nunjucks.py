"""promptfoo's Nunjucks rendering, reproduced with a sandboxed jinja2 environment at import time.

promptfoo (0.120.0, `renderPrompt`) renders a text prompt as follows: vars that name a file are loaded;
one trailing newline is dropped from each text var; `resolveVariables` substitutes `{{name}}` references
between vars (up to 5 passes, the first reference of each var per pass); each text var is rendered as a
template with the vars; the prompt is rendered with the rendered vars. A chat (JSON) prompt is rendered
string by string with the vars before that per-var rendering, and assertion values likewise.

Templates here are config text, so they are rendered only inside jinja2's ImmutableSandboxedEnvironment,
never by lm-eval: the environment exposes no environment variables (promptfoo's `env` global is refused)
and only the filters below. Differences from Nunjucks that are kept out: undefined names print "" (and
their attributes too), values print as JavaScript's String() prints them (`true`, `1,2`, `[object
Object]`), `.length` works on text and lists, and Nunjucks' own filters replace jinja2's where they differ
(`dump`, `escape`, `nl2br`, `truncate`) or are missing (`load`, promptfoo's JSON.parse).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from jinja2 import ChainableUndefined, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.promptfoo.syntax import PLACEHOLDER, js_str

_OPENER = re.compile(r"\{[{%#]")
_PARTIAL_TAG = re.compile(r"(\{%[^%]*$|\{\{[^}]*$|\{#[^#]*$)", re.MULTILINE)
_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_STRAY_COMMENT_END = re.compile(r"#\}")
_REFERENCE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _print(value) -> str:
    return "" if isinstance(value, ChainableUndefined) else js_str(value)


def _dump(value, spaces=None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=spaces, separators=None if spaces else (",", ":"))


def _escape(value) -> str:
    table = {"&": "&amp;", '"': "&quot;", "'": "&#39;", "<": "&lt;", ">": "&gt;"}
    return "".join(table.get(c, c) for c in _print(value))


def _truncate(value, length=255, killwords=False, end="...") -> str:
    text = _print(value)
    if len(text) <= length:
        return text
    cut = length if killwords else text.rfind(" ", 0, length + 1)
    return text[: length if cut == -1 else cut] + ("..." if end is None else end)


def _load(value):
    try:
        return json.loads(_print(value))
    except ValueError as e:
        raise TemplateError(f"load: not JSON ({e})") from None


class _Env(ImmutableSandboxedEnvironment):
    def getattr(self, obj, attribute):
        if attribute == "length" and isinstance(obj, (str, list, tuple)):
            return len(obj)  # JavaScript's .length
        return super().getattr(obj, attribute)


@lru_cache(maxsize=1)
def environment() -> _Env:
    env = _Env(undefined=ChainableUndefined, finalize=_print, autoescape=False, keep_trailing_newline=True)
    env.globals = {"range": lambda *a: list(range(*a)), "cycler": env.globals["cycler"], "joiner": env.globals["joiner"]}
    env.filters.update({"load": _load, "dump": _dump, "escape": _escape, "e": _escape, "truncate": _truncate,
                        "nl2br": lambda v: _print(v).replace("\r\n", "<br />\n").replace("\n", "<br />\n")})
    return env


def is_template(text: str) -> bool:
    return bool(_OPENER.search(text))


def is_plain(text: str) -> bool:
    """Only `{{ name }}` placeholders (which lm-eval's doc_to_text can hold as they are)."""
    return not _OPENER.search(PLACEHOLDER.sub("", text))


def problem(template: str, where: str) -> str | None:
    """Why a template cannot be rendered here (syntax Nunjucks and jinja2 read differently, `env`)."""
    try:
        names = meta.find_undeclared_variables(environment().parse(template))
    except TemplateError as e:
        return f"{where}: a template jinja2 cannot read ({e.message})"
    if "env" in names:
        return f"{where}: reads environment variables (env.*); give the value as a var"
    return None


def render(template: str, context: dict, where: str, wrap_partial: bool = False) -> str:
    """The template rendered in the sandbox; a partial tag is kept literally where promptfoo wraps it
    in {% raw %} (prompts and vars)."""
    if _STRAY_COMMENT_END.search(_COMMENT.sub("", template)):
        raise AboError(f"{where}: a '#}}' outside a comment, which Nunjucks refuses")
    if wrap_partial and _PARTIAL_TAG.search(template) and not re.search(r"\{%\s*raw\s*%\}", template):
        template = "{% raw %}" + template + "{% endraw %}"
    try:
        return environment().from_string(template).render(context)
    except (TemplateError, TypeError, ValueError, AttributeError) as e:
        raise AboError(f"{where}: cannot render ({type(e).__name__}: {e})") from None


def _js_replace(text: str, found: re.Match, value: str) -> str:
    """String.prototype.replace(placeholder, value) for the first occurrence, `$` patterns included."""
    def expand(m):
        code = m.group(1)
        return {"$": "$", "&": found.group(0), "`": text[: found.start()], "'": text[found.end():]}[code]
    replacement = re.sub(r"\$([$&`'])", expand, value)
    return text[: found.start()] + replacement + text[found.end():]


def resolve_variables(values: dict) -> dict:
    """promptfoo's resolveVariables: up to 5 passes; in each, a text var's first `{{name}}` is replaced
    by that var's value when the var is defined."""
    values = dict(values)
    for _ in range(5):
        resolved = True
        for key, value in values.items():
            if not isinstance(value, str):
                continue
            found = _REFERENCE.search(value)
            if found and found.group(1) in values:
                other = values[found.group(1)]
                values[key] = _js_replace(value, found, "null" if other is None else js_str(other))
                resolved = False
        if resolved:
            break
    return values


def rendered_vars(resolved: dict, where: str) -> dict:
    """Each text var rendered as a template with the (resolved) vars, as renderPrompt does."""
    return {k: render(v, resolved, f"{where}.vars.{k}", wrap_partial=True) if isinstance(v, str) else v
            for k, v in resolved.items()}
