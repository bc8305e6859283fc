"""JavaScript regular expressions (promptfoo's `regex` assertion: `new RegExp(value).test(output)`, no
flags) compiled for Python's `re` so that they match what they match in JavaScript.

Where the two dialects differ for the same source text:
- `\\d`, `\\w`, `\\b` are ASCII in JavaScript (Python's are Unicode): compiled with `re.ASCII`;
- `\\s` is Unicode whitespace in JavaScript (and `\\S` its complement): spelled out as a class;
- `.` stops at `\\n`, `\\r`, U+2028 and U+2029 in JavaScript (Python's only at `\\n`);
- `$` is the end of the input in JavaScript (Python's also matches before a final `\\n`): `\\Z`;
- an escaped letter JavaScript does not know (`\\a`, `\\e`, `\\A`, `\\Z`, `\\z`, ...) is that letter;
- `[]` matches nothing and `[^]` any character; named groups `(?<n>...)` and `\\k<n>` are renamed.
A pattern Python cannot express (a variable-length lookbehind, `\\S` inside a class) is refused.
JavaScript counts UTF-16 code units: a character outside the Basic Multilingual Plane is one character
here and two there (only `.` next to such a character can tell).
"""

from __future__ import annotations

import re
from functools import lru_cache

from lm_eval_abo.infra.errors import AboError

# JavaScript's WhiteSpace and LineTerminator characters (ECMA-262 \s)
JS_SPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_KNOWN_LETTERS = set("bBdDwWsStnvfrcxuk")  # escapes with a meaning in a JavaScript regex without flags


def _escape(src: str, i: int, in_class: bool, named: bool) -> tuple[str, int]:
    """The Python spelling of the escape at src[i] (a backslash), and the index after it."""
    if i + 1 >= len(src):
        raise ValueError("\\ at end of pattern")
    n = src[i + 1]
    if n == "s":
        return (JS_SPACE if in_class else f"[{JS_SPACE}]"), i + 2
    if n == "S":
        if in_class:
            raise ValueError("\\S inside a character class")
        return f"[^{JS_SPACE}]", i + 2
    if n == "k" and named and src.startswith("<", i + 2):
        end = src.index(">", i + 3)
        return f"(?P={src[i + 3:end]})", end + 1
    if n == "c" and i + 2 < len(src) and src[i + 2].isascii() and src[i + 2].isalpha():
        return re.escape(chr(ord(src[i + 2]) % 32)), i + 3
    if n.isascii() and n.isalpha() and (n not in _KNOWN_LETTERS or n == "k"):
        return re.escape(n), i + 2  # an identity escape in JavaScript
    return src[i:i + 2], i + 2


def translate(src: str) -> str:
    """The Python pattern for a JavaScript regex source (no flags)."""
    named = "(?<" in src.replace("(?<=", "").replace("(?<!", "")
    out, i, in_class = [], 0, False
    while i < len(src):
        c = src[i]
        if c == "\\":
            piece, i = _escape(src, i, in_class, named)
            out.append(piece)
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append("\\" + c if c in "[&~|" else c)  # Python would read these as nested sets
        elif c == "[":
            if src.startswith("[^]", i):
                out.append("(?s:.)")
                i += 3
                continue
            if src.startswith("[]", i):
                out.append("(?!)")
                i += 2
                continue
            in_class = True
            out.append("[")
            if src.startswith("^", i + 1):
                out.append("^")
                i += 1
        elif c == ".":
            out.append("[^\n\r\u2028\u2029]")
        elif c == "$":
            out.append(r"\Z")
        elif src.startswith("(?", i) and not src.startswith(("(?:", "(?=", "(?!", "(?<"), i):
            raise ValueError(f"JavaScript has no {src[i:i + 3]!r} group (a syntax error there)")
        elif src.startswith("(?<", i) and not src.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=512)
def compile_js(pattern: str) -> re.Pattern:
    """A JavaScript regex source compiled for Python with JavaScript's semantics (see the module
    docstring); an AboError names the pattern when Python cannot express it."""
    try:
        return re.compile(translate(pattern), re.ASCII)
    except (ValueError, re.error) as e:
        raise AboError(f"regex {pattern!r} has no Python equivalent ({e})") from None


def js_trim(text: str) -> str:
    """JavaScript's String.prototype.trim."""
    return re.sub(f"\\A[{JS_SPACE}]+|[{JS_SPACE}]+\\Z", "", text)


def js_trim_end(text: str) -> str:
    """JavaScript's String.prototype.trimEnd."""
    return re.sub(f"[{JS_SPACE}]+\\Z", "", text)
