"""promptfoo's deterministic assertion types in Python, each as promptfoo 0.120.0's handler computes it
(`src/assertions/*.ts`): the same value parsing (comma lists, quoted items), the same string functions
(JavaScript's `includes`, `toLowerCase`, `trim`, `JSON.parse`, `RegExp`), the same treatment of `not-`.

`check(kind, negated, value, output, assertion)` returns (pass, score). Types that are not a property of
the prompt on a document (cost, latency) are DROPPED by the importer with one line each; the others
promptfoo has are REFUSED with the reason.
"""

from __future__ import annotations

import json
import math

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.promptfoo.jsregex import compile_js, js_trim
from lm_eval_abo.promptfoo.syntax import js_str

DROPPED = {
    "cost": "the cost of a call is not a property of the prompt on a document",
    "latency": "the latency of a call is not a property of the prompt on a document",
}
_NOT_IMPORTED = ("graded by a model in a way not imported; llm-rubric, model-graded-closedqa, factuality, g-eval, "
                 "similar and answer-relevance are")
REFUSED = {
    **{kind: _NOT_IMPORTED for kind in ("search-rubric", "pi", "moderation", "classifier")},
    **{kind: "needs the retrieval context of a RAG pipeline" for kind in ("context-faithfulness", "context-recall",
                                                                          "context-relevance")},
    "conversation-relevance": "grades a multi-turn conversation",
    **{kind: "compares the replies of several prompts, not one reply" for kind in ("select-best", "max-score")},
    "ruby": "runs Ruby code",
    "webhook": "calls a web service",
    "is-sql": "checked by the node-sql-parser grammar, which has no Python equivalent",
    "contains-sql": "checked by the node-sql-parser grammar, which has no Python equivalent",
    "contains-json": "extracts JSON with a lenient YAML parser that is not reproduced",
    "perplexity": "needs the provider's log-probabilities",
    "perplexity-score": "needs the provider's log-probabilities",
    "finish-reason": "needs the provider's finish reason",
}


class GradingError(Exception):
    """Where promptfoo's grading throws: the whole test fails with score 0, not only the assertion."""


def _js_json(text: str):
    """JSON.parse: no NaN/Infinity (which Python's json accepts)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def _deep_equal(a, b) -> bool:
    """Node's util.isDeepStrictEqual on parsed JSON (booleans are not numbers; 1 and 1.0 are one number)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


_QUOTED_ITEMS = r'(".*?"|[^,]+)(?=\s*,|\s*$)'


def _items(kind: str, value) -> list[str]:
    """The list value of a *-any / *-all assertion, parsed from text as promptfoo parses it."""
    if isinstance(value, list):
        return [js_str(v) for v in value]
    if not isinstance(value, str):
        raise AboError(f"a {kind} assertion needs a list or comma-separated text, not {value!r}")
    if kind == "contains-any":  # items may be "quoted, with commas"
        return [js_trim(m.group(1)).removeprefix('"').removesuffix('"')
                for m in compile_js(_QUOTED_ITEMS).finditer(value)]
    return [js_trim(v) for v in value.split(",")]


def _schema_ok(value, parsed) -> bool:
    import jsonschema
    import yaml

    schema = yaml.safe_load(value) if isinstance(value, str) else value
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return validator.is_valid(parsed)


def levenshtein(a: str, b: str) -> int:
    """Edit distance over UTF-16 code units, as fastest-levenshtein counts."""
    a16 = a.encode("utf-16-le")
    b16 = b.encode("utf-16-le")
    a_units = [a16[i:i + 2] for i in range(0, len(a16), 2)]
    b_units = [b16[i:i + 2] for i in range(0, len(b16), 2)]
    previous = list(range(len(b_units) + 1))
    for i, ca in enumerate(a_units, 1):
        current = [i]
        for j, cb in enumerate(b_units, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def check(kind: str, negated: bool, value, output: str, assertion: dict) -> tuple[bool, float]:
    """(pass, score) of one assertion of a deterministic type on a reply."""
    if kind == "equals":
        if isinstance(value, (dict, list)):
            try:
                ok = _deep_equal(value, _js_json(output)) != negated
            except ValueError:
                ok = False  # promptfoo: unparseable output fails equals and not-equals alike
        else:
            ok = (js_str(value) == output) != negated
    elif kind in ("contains", "icontains", "starts-with"):
        text = js_str(value)
        if kind == "contains":
            ok = text in output
        elif kind == "icontains":
            ok = text.lower() in output.lower()
        else:
            ok = output.startswith(text)
        ok = ok != negated
    elif kind in ("contains-any", "icontains-any", "contains-all", "icontains-all"):
        items, fold = _items(kind, value), kind.startswith("i")
        haystack = output.lower() if fold else output
        found = [(item.lower() if fold else item) in haystack for item in items]
        ok = (any(found) if kind.endswith("any") else all(found)) != negated
    elif kind == "regex":
        ok = (compile_js(js_str(value)).search(output) is not None) != negated
    elif kind == "is-json":
        try:
            parsed = _js_json(output)
        except ValueError:
            return negated, float(negated)
        ok = not negated
        if ok and value:
            ok = _schema_ok(value, parsed)
    elif kind == "levenshtein":  # promptfoo ignores `not-` here
        threshold = assertion.get("threshold")
        ok = levenshtein(output, js_str(value)) <= (5 if threshold is None else threshold)
    else:
        raise AboError(f"unsupported assertion type {assertion.get('type')!r}")
    return ok, 1.0 if ok else 0.0


SUPPORTED = ("equals", "contains", "icontains", "starts-with", "regex", "contains-any", "icontains-any", "contains-all",
             "icontains-all", "is-json", "levenshtein")
NEEDS_VALUE = {"contains", "icontains", "starts-with", "regex", "contains-any", "icontains-any", "contains-all",
               "icontains-all", "levenshtein"}


def value_problem(kind: str, value) -> str | None:
    """Why promptfoo would fail on this assertion's value before grading (it throws), if it would."""
    if kind in NEEDS_VALUE and (value is None or value == "" or value == 0 or value is False):
        return f"a {kind} assertion without a value"
    if kind == "regex":
        try:
            compile_js(js_str(value))
        except AboError as e:
            return str(e)
    if kind == "is-json" and value and not isinstance(value, (str, dict)):
        return "an is-json schema that is neither text nor a mapping"
    if isinstance(value, float) and not math.isfinite(value):
        return f"a {kind} value that is not a finite number"
    return None
