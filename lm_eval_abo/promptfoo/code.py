"""promptfoo's code assertions, `python` and `javascript`, run as promptfoo 0.120.0 runs them.

The code is the config's own (inline in the assertion's value, or `file://path.py[:function]`,
`file://path.js[:function]`): the user chose to import it, and it runs with the user's rights, as under
promptfoo. The model's reply and the test's vars only ever reach it as the values `output` and
`context`; an inline value with template syntax (which promptfoo would fill with the vars, making
data part of the code) is refused at import.

- `python` runs in this process: inline code becomes the body of `main(output, context)` (one line is
  an expression to return), a file's function (default `get_assert`) is called; the result passes
  through JSON as promptfoo's Python bridge passes it, and is read as promptfoo reads it: True/False (or
  "true"/"false"), a number (passes above 0, or at the assertion's threshold), a GradingResult dict
  (`pass`, `score`, `reason`; snake_case keys accepted; a score under the threshold fails). `not-` is
  ignored, as promptfoo ignores it. Any error fails the assertion with score 0.
- `javascript` runs in the run's one Node.js worker (`node`): a boolean (inverted by `not-`), a number,
  or a GradingResult taken as it is; an error in inline code fails the assertion, an error loading or
  calling a file's function fails the whole test (promptfoo throws there).

`context` holds `prompt` (the text sent to the target), `vars` (the test's vars), `test` (its vars,
assertions, description, metadata), `config` (the assertion's) and `providerResponse.output`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import re
import sys
import threading
from functools import lru_cache
from pathlib import Path

from lm_eval_abo.promptfoo import node
from lm_eval_abo.promptfoo.jsregex import js_trim

CODE_TYPES = ("python", "javascript")
PYTHON_SUFFIXES = (".py",)
JS_SUFFIXES = (".js", ".cjs", ".mjs")
_NUMBER = re.compile(r"[+-]?(Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)")
_IMPORT_LOCK = threading.Lock()
_MISSING = object()


def split_ref(value: str) -> tuple[str, str | None]:
    """`file://path[:function]` as (path, function), split at the first ':' after the scheme as promptfoo does."""
    path, _, function = value.removeprefix("file://").partition(":")
    return path, function or None


def _js_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"  # null, lists and mappings alike


def is_grading_result(value) -> bool:
    """promptfoo's isGradingResult on a JSON value."""
    if not isinstance(value, dict):
        return False
    optional = {"namedScores": "object", "tokensUsed": "object", "assertion": "object", "comment": "string"}
    return (_js_type(value.get("pass")) == "boolean" and "pass" in value and _js_type(value.get("score")) == "number"
            and "score" in value and _js_type(value.get("reason")) == "string" and "reason" in value
            and all(key not in value or _js_type(value[key]) == kind for key, kind in optional.items())
            and ("componentResults" not in value or isinstance(value["componentResults"], list)))


def _camel(result: dict) -> dict:
    """promptfoo's mapping of a Python GradingResult's snake_case keys."""
    out = dict(result)
    for snake, camel in (("pass_", "pass"), ("named_scores", "namedScores"), ("component_results", "componentResults"),
                         ("tokens_used", "tokensUsed")):
        if snake in out and camel not in out:
            out[camel] = out[snake]
    if isinstance(out.get("componentResults"), list):
        out["componentResults"] = [_camel(c) if isinstance(c, dict) else c for c in out["componentResults"]]
    return out


def parse_float(text: str) -> float | None:
    """JavaScript's parseFloat (None for NaN)."""
    found = _NUMBER.match(js_trim(text))
    return float(found.group(0).replace("Infinity", "inf")) if found else None


def _threshold_passes(score: float, assertion: dict, otherwise) -> bool:
    threshold = assertion.get("threshold", _MISSING)
    if threshold is _MISSING:
        return otherwise(score)
    return score >= (threshold or 0)  # a null threshold compares as 0 in JavaScript


def python_verdict(result, assertion: dict) -> tuple[bool, float]:
    """How promptfoo's python assertion reads the (JSON) value the code returned."""
    if result is True or (isinstance(result, str) and result.lower() == "true"):
        return True, 1.0
    if result is False or (isinstance(result, str) and result.lower() == "false"):
        return False, 0.0
    if isinstance(result, str) and result.startswith("{"):
        try:
            parsed = json.loads(result, parse_constant=_refuse_constant)
        except ValueError:
            return False, 0.0
        return (bool(parsed["pass"]), float(parsed["score"])) if is_grading_result(parsed) else (False, 0.0)
    if result is None or isinstance(result, (dict, list)):
        mapped = _camel(result) if isinstance(result, dict) else {str(i): v for i, v in enumerate(result or [])}
        if not is_grading_result(mapped):
            return False, 0.0
        score = float(mapped["score"])
        passed = bool(mapped["pass"]) and not ("threshold" in assertion and score < (assertion["threshold"] or 0))
        return passed, score
    score = parse_float(result if isinstance(result, str) else _number_text(result))
    if score is None:
        return False, 0.0
    return _threshold_passes(score, assertion, lambda s: s > 0), score


def _number_text(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def inline_source(code: str) -> str:
    """The module promptfoo writes for inline Python: the code as the body of main(output, context)."""
    if "\n" in code:
        found = re.search(r"^(?!\s*$)\s+", code, re.MULTILINE)
        indent = found.group(0) if found else "    "
        body = "\n".join(indent + line for line in code.split("\n"))
    else:
        body = f"    return {code}"
    return f"import json\n\ndef main(output, context):\n{body}\n"


@lru_cache(maxsize=256)
def _inline_function(code: str):
    namespace = {"__name__": "promptfoo_python_assertion"}
    exec(compile(inline_source(code), "<promptfoo python assertion>", "exec"), namespace)  # noqa: S102 (the config's own code)
    return namespace["main"]


@lru_cache(maxsize=64)
def _module(path: str):
    """A Python assertion file, loaded once per run (its folder on sys.path, as promptfoo's wrapper does)."""
    folder = str(Path(path).parent)
    with _IMPORT_LOCK:
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(Path(path).stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _file_function(path: str, name: str):
    module = _module(path)
    if "." in name:
        owner, method = name.split(".", 1)
        return getattr(getattr(module, owner), method)
    return getattr(module, name)


def run_python(assertion: dict, output: str, context: dict) -> tuple[bool, float]:
    """(pass, score) of a python assertion, run in this process."""
    value = assertion.get("value")
    args = json.loads(json.dumps([output, context], ensure_ascii=False, default=str))  # copies, as JSON carries them
    try:
        if value.startswith("file://"):
            path, function = split_ref(value)
            call = _file_function(path, function or "get_assert")
        else:
            call = _inline_function(value)
        result = asyncio.run(call(*args)) if inspect.iscoroutinefunction(call) else call(*args)
        result = json.loads(json.dumps(result, ensure_ascii=False, allow_nan=False))
    except (Exception, SystemExit):  # noqa: BLE001 (the config's code may raise or exit: promptfoo fails the assertion)
        return False, 0.0
    return python_verdict(result, assertion)


def run_javascript(assertion: dict, output: str, context: dict, negated: bool) -> tuple[bool, float]:
    """(pass, score) of a javascript assertion, run by the run's Node worker."""
    value = assertion.get("value")
    request = {"output": output, "context": json.loads(json.dumps(context, ensure_ascii=False, default=str)),
               "inverse": negated}
    if "threshold" in assertion:
        request["threshold"] = assertion["threshold"]
    if value.startswith("file://"):
        request["file"], request["function"] = split_ref(value)
    else:
        request["code"] = value
    return node.run_javascript(request)


def check(kind: str, negated: bool, assertion: dict, output: str, context: dict) -> tuple[bool, float]:
    if kind == "python":
        return run_python(assertion, output, context)
    return run_javascript(assertion, output, context, negated)


def value_problem(kind: str, value) -> str | None:
    """Why a code assertion cannot be imported (promptfoo would throw, or data would become code)."""
    if not isinstance(value, str) or not value.strip():
        return f"a {kind} assertion without code (its value must be code or file://)"
    if value.startswith("file://"):
        path, _ = split_ref(value)
        suffixes = PYTHON_SUFFIXES if kind == "python" else JS_SUFFIXES
        if not path.endswith(suffixes):
            return f"a {kind} assertion from {Path(path).name} (the file must end in {', '.join(suffixes)})"
    elif re.search(r"\{[{%#]", value):
        return (f"a {kind} assertion whose code holds template syntax (promptfoo would write the vars into the code): "
                "read them from context['vars'] instead")
    if kind == "javascript" and node.node_binary() is None:
        return f"a javascript assertion {node.NO_NODE}"
    return None
