"""promptfoo's embedding assertions, `similar` and `answer-relevance`, graded as promptfoo 0.120.0 grades them
(`matchesSimilarity`, `matchesAnswerRelevance`), with an embedding model (which one: `grader`).

- `similar` (`similar:cosine`, `similar:dot`, `similar:euclidean`): the reply and the expected value are
  embedded; cosine similarity (or the dot product) passes at the threshold (0.75 by default) or above,
  and is the score; the euclidean distance passes at the threshold or below, scored 1 / (1 + distance).
  `not-similar` inverts the test and scores 1 - score. A list of expected values passes with the first
  that passes, else fails with the lowest score.
- `answer-relevance`: the grader is asked three times for the question the reply answers
  (`templates/grader_answer_relevance.j2`, promptfoo's wording, or the config's `rubricPrompt`); the mean
  cosine similarity of each question's embedding to the query's (the test's var `query`, else the prompt
  sent) passes at the threshold (0 by default) and is the score. `not-` is ignored, as in promptfoo.
An embedding or a question the models could not give fails the assertion with score 0.
"""

from __future__ import annotations

import math

from lm_eval_abo.promptfoo.checks import GradingError
from lm_eval_abo.promptfoo.graded import printed, prompt_messages, try_parse
from lm_eval_abo.promptfoo.syntax import js_str

SIMILAR, RELEVANCE = "similar", "answer-relevance"
EMBEDDING_TYPES = (SIMILAR, f"{SIMILAR}:cosine", f"{SIMILAR}:dot", f"{SIMILAR}:euclidean", RELEVANCE)
EPSILON = 2.0 ** -52  # JavaScript's Number.EPSILON: promptfoo's comparisons allow it
QUESTIONS = 3  # promptfoo asks the grader for a question three times


def cosine(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise GradingError("embeddings of unequal length")  # promptfoo throws
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _metric(kind: str) -> str:
    return kind.split(":", 1)[1] if ":" in kind else "cosine"


def _expected(assertion: dict) -> list[str]:
    value = assertion.get("value")
    return [js_str(v) for v in value] if isinstance(value, list) else [js_str(value)]


def _similar_one(metric: str, threshold: float, negated: bool, expected, output) -> tuple[bool, float]:
    if expected is None or output is None:
        return False, 0.0
    if len(expected) != len(output):
        raise GradingError("embeddings of unequal length")
    if metric == "euclidean":
        distance = math.sqrt(sum((x - y) ** 2 for x, y in zip(expected, output)))
        passed = distance >= threshold - EPSILON if negated else distance <= threshold + EPSILON
        score = 1 / (1 + distance)
        return passed, (1 - score if negated else score)
    value = sum(x * y for x, y in zip(expected, output)) if metric == "dot" else cosine(expected, output)
    passed = value <= threshold + EPSILON if negated else value >= threshold - EPSILON
    return passed, (1 - value if negated else value)


def question_messages(assertion: dict, output: str) -> list[dict]:
    return prompt_messages(("grader_answer_relevance",), ("user",), assertion.get("rubricPrompt"),
                           {"answer": printed(try_parse(output))})


def query(env) -> str:
    found = env.vars.get("query")
    return found if isinstance(found, str) else env.prompt


def requests(kind: str, assertion: dict, output: str, env, known) -> tuple[list, list]:
    """(grading requests, texts to embed) that can be made now; `known(assertion, messages, seed)` gives
    (asked, reply) of a grading request of this pass."""
    if kind != RELEVANCE:
        return [], [(assertion, text) for text in (*_expected(assertion), output)]
    messages = question_messages(assertion, output)
    asks, texts = [], []
    for seed in range(QUESTIONS):  # promptfoo asks again only after a question came back
        asks.append((assertion, messages, seed))
        asked, reply = known(assertion, messages, seed)
        if not (asked and reply):
            return asks, []  # embedded once all three questions are in: one call
        texts.append((assertion, reply))
    return asks, [(assertion, query(env)), *texts] if env.prompt else texts


def check(kind: str, negated: bool, assertion: dict, output: str, env, ask, embed) -> tuple[bool, float]:
    """(pass, score); `ask(assertion, messages, seed)` is the grader's reply, `embed(assertion, text)` a vector
    (None: the model gave none)."""
    threshold = assertion.get("threshold")
    if kind != RELEVANCE:
        threshold = 0.75 if threshold is None else float(threshold)
        metric, lowest = _metric(kind), math.inf
        for text in _expected(assertion):
            passed, score = _similar_one(metric, threshold, negated, embed(assertion, text), embed(assertion, output))
            if passed:
                return passed, score
            lowest = min(lowest, score)
        return (False, lowest) if isinstance(assertion.get("value"), list) else (False, score)
    if not env.prompt:
        raise GradingError("an answer-relevance assertion needs the prompt")  # promptfoo's invariant
    threshold = 0.0 if threshold is None else float(threshold)
    messages = question_messages(assertion, output)
    questions = []
    for seed in range(QUESTIONS):
        questions.append(ask(assertion, messages, seed))
        if not questions[-1]:
            return False, 0.0
    target = embed(assertion, query(env))
    vectors = [embed(assertion, q) for q in questions]
    if target is None or any(v is None for v in vectors):
        return False, 0.0
    mean = sum(cosine(target, v) for v in vectors) / len(vectors)
    return mean >= threshold - EPSILON, mean
