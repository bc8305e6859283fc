"""promptfoo's model-graded assertions, `llm-rubric`, `model-graded-closedqa` and `factuality`
(`model-graded-factuality`), graded as promptfoo 0.120.0 grades them, by a grader model.

The grader is asked what promptfoo asks it: promptfoo's grading prompts (our own jinja2 files
`templates/grader_*.j2` with the same wording), or the config's `rubricPrompt`, filled with the same
values (the reply JSON-parsed where it is JSON and printed back as Nunjucks prints it; the rubric or
expected answer; the prompt sent; the test's vars, which come last and win a name clash, as in
promptfoo). Its reply is read as promptfoo reads it:
- llm-rubric: the first JSON object in the reply (read leniently, as YAML); `pass` defaults to true and
  may be text ("yes"); `score` defaults to the pass; the assertion's threshold must be reached too;
  `not-` is ignored (as promptfoo ignores it);
- model-graded-closedqa: passes when the reply ends with "Y";
- factuality: the category A-E of the first JSON object (else a "(A)" in the text), scored by the
  test's `options.factuality` (A, B, C, E pass and D fails by default).
A reply the grader could not give, or one that cannot be read, fails the assertion with score 0.
Which model grades, and how the call is made (the run's ledger, cap and cache), is `grader`'s.
"""

from __future__ import annotations

import json
import math
import re

import yaml

from lm_eval_abo.infra import metaprompts
from lm_eval_abo.promptfoo import nunjucks
from lm_eval_abo.promptfoo.checks import GradingError, _js_json
from lm_eval_abo.promptfoo.jsregex import JS_SPACE, js_trim, js_trim_end
from lm_eval_abo.promptfoo.syntax import js_str

GRADED_TYPES = ("llm-rubric", "model-graded-closedqa", "factuality", "model-graded-factuality")
TEMPLATES = {"llm-rubric": ("grader_rubric_system", "grader_rubric_user"),
             "factuality": ("grader_factuality_system", "grader_factuality_user"),
             "model-graded-closedqa": ("grader_closedqa",)}
FACTUALITY_SCORES = {"A": "subset", "B": "superset", "C": "agree", "D": "disagree", "E": "differButFactual"}
_LEGACY_CATEGORY = re.compile(r"[" + JS_SPACE + r"]*\(?([a-eA-E])\)")


def _kind(kind: str) -> str:
    return "factuality" if kind == "model-graded-factuality" else kind


def js_json(value) -> str:
    """JSON.stringify of a JSON value (numbers as JavaScript writes them)."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + js_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join("null" if v is None else js_json(v) for v in value) + "]"
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "null"
    if isinstance(value, (bool, int, float)):
        return js_str(value)
    return json.dumps(str(value), ensure_ascii=False)


def printed(value) -> str:
    """A value as promptfoo's grading prompt prints it: objects as JSON, lists item by item, JavaScript's String()."""
    if isinstance(value, dict):
        return js_json(value)
    if isinstance(value, list):
        return ",".join(js_json(v) if isinstance(v, dict) else js_str(v) for v in value)
    return js_str(value)


def try_parse(text: str):
    """promptfoo's tryParse: the reply as JSON where it is JSON, else the text."""
    try:
        return _js_json(text)
    except ValueError:
        return text


def variables(kind: str, assertion: dict, output: str, env) -> dict:
    """The values the grading prompt is filled with (the vars last, as promptfoo spreads them)."""
    value = assertion.get("value")
    if kind == "llm-rubric":
        own = {"output": try_parse(output), "rubric": value if value is not None else ""}
    elif kind == "factuality":
        own = {"input": env.prompt, "ideal": value, "completion": try_parse(output)}
    else:
        own = {"input": env.prompt, "criteria": value, "completion": try_parse(output)}
    return {k: printed(v) for k, v in {**own, **env.vars}.items()}


def messages(kind: str, assertion: dict, output: str, env) -> list[dict]:
    """The chat messages promptfoo sends the grader for this assertion and reply."""
    kind = _kind(kind)
    names = TEMPLATES[kind]
    return prompt_messages(names, ("system", "user")[: len(names)], assertion.get("rubricPrompt"),
                           variables(kind, assertion, output, env))


def prompt_messages(names: tuple, roles: tuple, custom, values: dict) -> list[dict]:
    """The grading prompt as promptfoo sends it: our templates `names` (one message per role), or the config's
    `custom` prompt (text, or chat messages as JSON), filled with `values` (printed already)."""
    if custom is None:
        return [{"role": role, "content": metaprompts.text(name, **values)} for role, name in zip(roles, names)]
    if not isinstance(custom, str):
        custom = js_json(custom)
    try:
        parsed = json.loads(custom)
    except ValueError:
        return [{"role": "user", "content": nunjucks.render(custom, values, "rubricPrompt")}]
    rendered = _render_strings(parsed, values)
    if isinstance(rendered, list) and all(isinstance(m, dict) and "role" in m for m in rendered):
        return [{"role": m["role"], "content": printed(m.get("content"))} for m in rendered]
    return [{"role": "user", "content": js_json(rendered)}]


def _render_strings(value, values: dict):
    if isinstance(value, str):
        return nunjucks.render(value, values, "rubricPrompt")
    if isinstance(value, list):
        return [_render_strings(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _render_strings(v, values) for k, v in value.items()}
    return value


def _lenient(text: str):
    """js-yaml's reading of a JSON-like text (JSON first; YAML accepts unquoted keys and comments)."""
    try:
        return _js_json(text)
    except ValueError:
        pass
    lines = [re.sub(r"(^|\s)//+", lambda m: m.group(1) + "#", line) for line in text.split("\n")]
    return yaml.safe_load("\n".join(lines))


def extract_json_objects(text: str) -> list[dict]:
    """promptfoo's extractJsonObjects: from each `{`, the shortest balanced (or closed-off) span that
    parses as an object; the search goes on after it."""
    found, i, limit = [], 0, 100_000
    while i < len(text):
        if text[i] == "{":
            opened, closed, j = 1, 0, i + 1
            while j < min(i + limit, len(text)) and opened > closed:
                opened += text[j] == "{"
                closed += text[j] == "}"
                j += 1
                if opened == closed or j == len(text) or j == i + limit:
                    candidate = text[i:j] + "}" * max(opened - closed, 0)
                    try:
                        parsed = _lenient(candidate)
                    except (ValueError, yaml.YAMLError):
                        if opened == closed:
                            break
                        continue
                    if isinstance(parsed, dict):
                        found.append(parsed)
                        i = j - 1
                        break
        i += 1
    return found


def js_number(value) -> float:
    """JavaScript's Number() of a JSON value (NaN where it is not a number)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return js_number(value[0]) if len(value) == 1 else (0.0 if not value else math.nan)
    if isinstance(value, dict):
        return math.nan
    text = js_trim(str(value))
    if not text:
        return 0.0
    try:
        return float(int(text, 0)) if re.fullmatch(r"0[xob][0-9a-fA-F]+", text) else float(text.replace("Infinity", "inf"))
    except ValueError:
        return math.nan


def _rubric(assertion: dict, reply: str) -> tuple[bool, float]:
    objects = extract_json_objects(reply)
    if not objects:
        return False, 0.0
    parsed = objects[0]
    passed = parsed.get("pass")
    passed = True if passed is None else passed
    if not isinstance(passed, bool):
        passed = bool(re.fullmatch(r"true|yes|pass|y", js_str(passed), re.IGNORECASE))
    score = parsed.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        number = js_number(score) if "score" in parsed else math.nan
        score = number if math.isfinite(number) else float(passed)
    threshold = assertion.get("threshold")
    threshold = js_number(threshold) if isinstance(threshold, str) else threshold
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and math.isfinite(threshold):
        passed = passed and score >= threshold
    return passed, float(score)


def _factuality(assertion: dict, reply: str) -> tuple[bool, float]:
    scores = {letter: (assertion.get("factuality") or {}).get(name, 0 if letter == "D" else 1)
              for letter, name in FACTUALITY_SCORES.items()}
    objects = extract_json_objects(reply)
    category = objects[0].get("category") if objects else None
    if isinstance(category, str) and category:
        option = js_trim(category).upper()
        if option not in scores:
            return False, 0.0
    else:
        found = _LEGACY_CATEGORY.search(reply)
        if not found:
            return False, 0.0
        option = found.group(1).upper()
    passed = scores[option] > 0
    return passed, float(scores[option])


def verdict(kind: str, assertion: dict, reply: str | None) -> tuple[bool, float]:
    """(pass, score) of the grader's reply (None: it gave none)."""
    if not reply:
        return False, 0.0
    kind = _kind(kind)
    if kind == "llm-rubric":
        return _rubric(assertion, reply)
    if kind == "factuality":
        return _factuality(assertion, reply)
    passed = js_trim_end(reply).endswith("Y")
    return passed, float(passed)


def check(kind: str, assertion: dict, output: str, env, ask) -> tuple[bool, float]:
    """(pass, score) of one model-graded assertion; `ask(assertion, messages)` is the grader's reply or None."""
    if _kind(kind) != "llm-rubric" and not env.prompt:
        raise GradingError(f"a {kind} assertion needs the prompt")  # promptfoo's invariant
    return verdict(kind, assertion, ask(assertion, messages(kind, assertion, output, env)))


def value_problem(kind: str, value) -> str | None:
    """Why promptfoo would throw on a model-graded assertion's value before grading, if it would."""
    if kind == "answer-relevance":
        return None
    if kind == "g-eval" or kind.startswith("similar"):
        texts = value if isinstance(value, list) else [value]
        return None if texts and all(isinstance(v, str) for v in texts) else f"a {kind} assertion needs text or a list of texts as its value"
    if _kind(kind) != "llm-rubric" and not isinstance(value, str):
        return f"a {kind} assertion needs text as its value"
    if _kind(kind) == "llm-rubric" and not (value is None or isinstance(value, (str, dict, list))):
        return "an llm-rubric assertion needs text or an object as its value"
    return None
