"""promptfoo's `g-eval` assertion, graded as promptfoo 0.120.0 grades it (`matchesGEval`), by the grader model.

For each criterion (the assertion's value, text or a list of texts) the grader is asked twice:
1. for evaluation steps (`templates/grader_geval_steps.j2`, promptfoo's wording, or the config's
   `rubricPrompt.steps`): the first `{"steps"...}` on one line of its reply, JSON-parsed, must hold a
   non-empty list;
2. to score the reply by those steps (`grader_geval_evaluate.j2` or `rubricPrompt.evaluate`), with the
   prompt sent as the source text: the first `{...}` on one line of its reply, JSON-parsed; its `score`
   out of 10 is the assertion's score (`score / 10`, as promptfoo normalises it).
It passes when the score reaches the threshold (0.7 by default). A list of criteria scores their mean, and
passes when the mean reaches the threshold. A reply that cannot be read scores 0 and fails. `not-` is
ignored (as promptfoo ignores it); without the prompt sent, promptfoo throws (the test fails).
"""

from __future__ import annotations

import math

from lm_eval_abo.promptfoo.checks import GradingError, _js_json
from lm_eval_abo.promptfoo.graded import js_number, printed, prompt_messages, try_parse
from lm_eval_abo.promptfoo.jsregex import compile_js
from lm_eval_abo.promptfoo.syntax import js_str

KIND = "g-eval"
MAX_SCORE = 10
DEFAULT_THRESHOLD = 0.7
_STEPS = compile_js(r'\{"steps".+\}')
_OBJECT = compile_js(r"\{.+\}")


def _custom(assertion: dict, part: str):
    custom = assertion.get("rubricPrompt")
    return custom.get(part) if isinstance(custom, dict) else None  # promptfoo reads only {steps, evaluate}


def criteria(assertion: dict) -> list[str]:
    value = assertion.get("value")
    return [js_str(v) for v in value] if isinstance(value, list) else [js_str(value)]


def steps_messages(assertion: dict, criterion: str) -> list[dict]:
    return prompt_messages(("grader_geval_steps",), ("user",), _custom(assertion, "steps"), {"criteria": printed(criterion)})


def evaluate_messages(assertion: dict, criterion: str, steps: list, prompt: str, output: str) -> list[dict]:
    values = {"criteria": criterion, "steps": "\n- ".join(_joined(s) for s in steps), "maxScore": str(MAX_SCORE),
              "input": try_parse(prompt), "output": try_parse(output)}
    return prompt_messages(("grader_geval_evaluate",), ("user",), _custom(assertion, "evaluate"),
                           {k: printed(v) for k, v in values.items()})


def _joined(item) -> str:
    """An item as JavaScript's Array.join prints it."""
    if item is None:
        return ""
    if isinstance(item, dict):
        return "[object Object]"
    if isinstance(item, list):
        return ",".join(_joined(i) for i in item)
    return js_str(item)


def parse_steps(reply: str | None) -> list | None:
    """The evaluation steps of the grader's first reply, or None (promptfoo fails the assertion)."""
    found = _STEPS.search(reply) if reply else None
    try:
        steps = _js_json(found.group(0))["steps"] if found else None
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(steps, str) and steps:
        raise GradingError("g-eval steps that are text, not a list")  # promptfoo's steps.join throws
    return steps if isinstance(steps, list) and steps else None


def parse_score(reply: str | None) -> float | None:
    """score / 10 of the grader's evaluation reply (NaN where its score is not a number), or None."""
    found = _OBJECT.search(reply) if reply else None
    try:
        result = _js_json(found.group(0)) if found else None
    except ValueError:
        return None
    if not isinstance(result, dict):
        return math.nan if result is not None else None
    return js_number(result["score"]) / MAX_SCORE if "score" in result else math.nan


def requests(assertion: dict, output: str, env, known) -> list[tuple[dict, list[dict], int]]:
    """The grading requests that can be made now: each criterion's steps, and its evaluation once its steps
    are `known` (a function of (assertion, messages) giving (asked, reply))."""
    found = []
    for criterion in criteria(assertion):
        first = steps_messages(assertion, criterion)
        found.append((assertion, first, 0))
        asked, reply = known(assertion, first)
        steps = _safe_steps(reply) if asked else None
        if steps:
            found.append((assertion, evaluate_messages(assertion, criterion, steps, env.prompt, output), 0))
    return found


def _safe_steps(reply):
    try:
        return parse_steps(reply)
    except GradingError:
        return None


def check(assertion: dict, output: str, env, ask) -> tuple[bool, float]:
    if not env.prompt:
        raise GradingError("a g-eval assertion needs the prompt")  # promptfoo: "No source text to estimate reply"
    threshold = assertion.get("threshold")
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    scores = []
    for criterion in criteria(assertion):
        steps = parse_steps(ask(assertion, steps_messages(assertion, criterion)))
        score = None if steps is None else parse_score(ask(assertion, evaluate_messages(assertion, criterion, steps,
                                                                                         env.prompt, output)))
        scores.append((False, 0.0) if score is None else (score >= threshold, score))
    if isinstance(assertion.get("value"), list):
        mean = sum(score for _, score in scores) / len(scores) if scores else math.nan
        return mean >= threshold, mean
    return scores[0]
