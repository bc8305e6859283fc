"""Where promptfoo's template and regex syntax meets Python.

promptfoo (0.120.0, `renderPrompt` and `runAssertion`) renders the prompt, every string test var and
every assertion value with Nunjucks; before that it loads or runs a var that starts with `file://` or
`package:`, drops one trailing newline from each var, and replaces `{{name}}` inside a var by another
var's value. Text that must reach the model as written (an optimizer's instruction, a dataset's
question) is therefore escaped here so that all of this gives it back unchanged. Imported templates are
accepted only in the plain `{{ name }}` form, which is substituted here, never rendered.
"""

from __future__ import annotations

import re

from lm_eval_abo.infra.errors import AboError

# A "{" that would open a Nunjucks (or Jinja2) tag ({{ {% {#), or the "#" of a "#}", which Nunjucks
# rejects outside a comment
_TAG_OPEN = re.compile(r"\{(?=[{%#])|#(?=\})")
_LOADED_PREFIXES = ("file://", "package:")  # promptfoo loads (or runs) a var that starts with these
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
NAME = re.compile(r"[A-Za-z_]\w*")


def printed(char: str) -> str:
    """A template expression that prints one character."""
    return "{{ '" + char + "' }}"


def escape_literal(text: str) -> str:
    """Text that Nunjucks and Jinja2 render back to itself: each `{` that would open a tag (and each `#`
    that would close a comment) is printed by an expression instead, so no tag starts inside the text."""
    return _TAG_OPEN.sub(lambda m: printed(m.group(0)), text)


def escape_var(value: str) -> str:
    """A promptfoo test var that its renderPrompt turns back into `value` (see the module docstring)."""
    text = escape_literal(value)
    if text.startswith(_LOADED_PREFIXES):
        text = printed(text[0]) + text[1:]
    if text.endswith("\n"):
        text += "\n"  # promptfoo drops one
    return text


def chat_var_problem(value: str, names) -> str | None:
    """Why a var cannot go literally into a chat (JSON) prompt, where promptfoo does not render vars
    (so escaping would show) but still loads `file://` vars and fills `{{name}}` from other vars."""
    if value.startswith(_LOADED_PREFIXES):
        return "starts with a prefix promptfoo loads as a file or package"
    if any(m.group(1) in names for m in PLACEHOLDER.finditer(value)):
        return "contains a {{name}} that promptfoo would fill from another var"
    return None


def template_parts(template: str, where: str) -> list[str]:
    """A promptfoo template split into [text, name, text, name, ..., text]; anything beyond plain
    `{{ name }}` placeholders (tags, filters, expressions, comments) is refused, since imported text is
    never executed as a template."""
    parts = PLACEHOLDER.split(template)
    for literal in parts[::2]:
        if _TAG_OPEN.search(literal):
            raise AboError(f"{where}: only plain {{{{ name }}}} placeholders are supported, not other Nunjucks syntax")
    return parts


def fill(parts: list[str], values: dict) -> str:
    """The template's text with each placeholder replaced by its value ("" when missing, as Nunjucks)."""
    return "".join(part if i % 2 == 0 else js_str(values.get(part)) for i, part in enumerate(parts))


def jinja_template(parts: list[str]) -> str:
    """The same template for lm-eval (Jinja2): literal text escaped, placeholders kept."""
    return "".join(escape_literal(part) if i % 2 == 0 else "{{" + part + "}}" for i, part in enumerate(parts))


def js_str(value) -> str:
    """A YAML value as JavaScript's String() writes it (what promptfoo compares and inserts): null as
    "", booleans in lower case, numbers without a needless ".0", a list as its items joined by commas,
    a mapping as "[object Object]"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", text).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, (list, tuple)):
        return ",".join(js_str(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def python_regex_to_js(pattern: str, where: str) -> tuple[str, str]:
    """(source, flags) of a JavaScript RegExp that matches as Python's `re` does, for the syntax both
    share; leading inline flags become RegExp flags, named groups are renamed."""
    flags = ""
    leading = re.match(r"\(\?([a-zA-Z]+)\)", pattern)
    if leading:
        for flag in leading.group(1):
            if flag in "ims":
                flags += flag
            elif flag != "u":  # Python str patterns are Unicode already
                raise AboError(f"{where}: the regex flag (?{flag}) has no JavaScript equivalent")
        pattern = pattern[leading.end():]
    for python_only in (r"\A", r"\Z", "(?#", "(?(", "(?i", "(?m", "(?s", "(?x", "(?a"):
        if python_only in pattern:
            raise AboError(f"{where}: the regex uses {python_only!r}, which JavaScript lacks; rewrite it")
    pattern = pattern.replace("(?P<", "(?<")
    pattern = re.sub(r"\(\?P=(\w+)\)", r"\\k<\1>", pattern)
    return pattern, "".join(sorted(set(flags)))


def js_regex_to_python(pattern: str, where: str) -> re.Pattern:
    """A JavaScript regex source (promptfoo's `regex` assertion, no flags) compiled for Python with
    JavaScript's semantics (see `jsregex`)."""
    from lm_eval_abo.promptfoo.jsregex import compile_js

    try:
        return compile_js(pattern)
    except AboError as e:
        raise AboError(f"{where}: {e}") from None
