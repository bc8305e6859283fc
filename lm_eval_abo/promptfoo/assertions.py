"""promptfoo's assertions graded in Python, and the lm-eval hooks of imported promptfoo tasks.

An imported task keeps each test's grading as JSON in the document field `promptfoo_grading`:
`{"assert": [...], "threshold": ...}`, defaultTest's assertions first, `{{ var }}` references already
filled in; with code or model-graded assertions also the test's `vars`, `prompt` and `test`.
`process_results` grades the target's reply with it as promptfoo 0.120.0 does (`runAssertions`): each
assertion gives a pass and a score (deterministic types in `checks`, `python` and `javascript` in
`code`, model-graded ones in `graded` and `geval`, embedding ones in `similarity`); a zero-weight assertion
always passes; the test score is the weighted mean; the test passes
when no assertion failed or, with a non-zero threshold, when the score reaches it; where promptfoo
throws (`GradingError`) the test fails with score 0. The task's metric `pass_rate` is the mean of
passes, i.e. promptfoo's pass rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.promptfoo import checks, code, geval, graded, grader, similarity

MODEL_TYPES = (*graded.GRADED_TYPES, geval.KIND, *similarity.EMBEDDING_TYPES)  # graded by a grader or an embedder
SUPPORTED = (*checks.SUPPORTED, *code.CODE_TYPES, *MODEL_TYPES)
ENV_TYPES = {*code.CODE_TYPES, *MODEL_TYPES}  # the types that see more than the reply
GRADING_FIELD = "promptfoo_grading"
METRIC = "pass_rate"


@dataclass(frozen=True)
class Env:
    """What a test's code assertions see besides the reply: the prompt sent, the vars, the test."""

    prompt: str = ""
    vars: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)

    def context(self, assertion: dict, output: str) -> dict:
        """promptfoo's assertion `context` (the parts of it a reply graded here has)."""
        return {"prompt": self.prompt, "vars": self.vars, "test": self.test, "providerResponse": {"output": output},
                **({"config": assertion["config"]} if "config" in assertion else {})}


def needs_env(asserts: list[dict]) -> bool:
    """Whether any assertion (in assert-sets too) reads the vars, the prompt or the test."""
    return any(needs_env(a.get("assert") or []) if a.get("type") == "assert-set" else base_type(a["type"])[0] in ENV_TYPES
               for a in asserts)


def env_of(grading: dict, prompt: str | None = None) -> Env:
    """The Env of a test's grading JSON; `prompt`: the text sent (else the prompt recorded at import)."""
    variables = grading.get("vars") or {}
    test = {"vars": variables, "assert": grading.get("assert") or [], **(grading.get("test") or {})}
    return Env(prompt if prompt is not None else grading.get("prompt", ""), variables, test)


def base_type(kind: str) -> tuple[str, bool]:
    """An assertion type without its `not-` prefix, and whether it was negated."""
    return (kind[4:], True) if kind.startswith("not-") else (kind, False)


def check(assertion: dict, output: str, env: Env | None = None) -> bool:
    """One assertion on one reply."""
    try:
        return _result(assertion, output, env or Env())[0]
    except checks.GradingError:
        return False


def _result(assertion: dict, output: str, env: Env) -> tuple[bool, float]:
    if assertion.get("type") == "assert-set":
        return _grade(assertion, output, env)
    kind, negated = base_type(assertion["type"])
    if kind not in SUPPORTED:
        raise AboError(f"unsupported assertion type {assertion['type']!r}")
    if kind in code.CODE_TYPES:
        return code.check(kind, negated, assertion, output, env.context(assertion, output))
    if kind in graded.GRADED_TYPES:
        return graded.check(kind, assertion, output, env, grader.current().ask)
    if kind == geval.KIND:
        return geval.check(assertion, output, env, grader.current().ask)
    if kind in similarity.EMBEDDING_TYPES:
        return similarity.check(kind, negated, assertion, output, env, grader.current().ask, grader.current().embed)
    return checks.check(kind, negated, assertion.get("value"), output, assertion)


def grade(grading: dict, output: str, env: Env | None = None) -> tuple[bool, float]:
    """(passed, score) of a test's assertions on one reply (`env`: what code assertions see, else the
    grading's own); a test promptfoo would end with an error fails with score 0."""
    try:
        return _grade(grading, output, env or env_of(grading))
    except checks.GradingError:
        return False, 0.0


def _grade(grading: dict, output: str, env: Env) -> tuple[bool, float]:
    """(passed, score) of a test's assertions (or an assert-set's) on one reply, as promptfoo's
    AssertionsResult: the weighted mean score; a zero-weight assertion always passes; with a threshold
    the score decides, else any failure fails."""
    asserts = grading.get("assert") or []
    if not asserts:
        return True, 1.0
    total = weights = 0.0
    failed = False
    for assertion in asserts:
        weight = float(assertion.get("weight", 1))
        ok, score = _result(assertion, output, env)
        ok = ok or (weight == 0 and assertion.get("type") != "assert-set")  # runAssertion's rule, not a set's
        total += weight * score
        weights += weight
        failed = failed or not ok
    score = total / weights if weights > 0 else 0.0
    threshold = grading.get("threshold")
    return (score >= threshold if threshold else not failed), score


def _unknown(*_request) -> tuple[bool, None]:
    return False, None


def graded_requests(asserts: list[dict], output: str, env: Env, known=_unknown) -> tuple[list[tuple], list[tuple]]:
    """The requests of a test's model-graded assertions (in assert-sets too) on one reply that can be made now:
    (grading requests (assertion, messages, seed), texts to embed (assertion, text)). `known(assertion,
    messages, seed)` gives (asked, reply) of this pass's grading requests: a second step (g-eval's
    evaluation, answer-relevance's embeddings) needs the first's replies."""
    asks, texts = [], []
    for assertion in asserts:
        kind = base_type(assertion["type"])[0]
        if assertion["type"] == "assert-set":
            more = graded_requests(assertion.get("assert") or [], output, env, known)
            asks, texts = asks + more[0], texts + more[1]
        elif kind in graded.GRADED_TYPES and (env.prompt or kind == "llm-rubric"):
            asks.append((assertion, graded.messages(kind, assertion, output, env), 0))
        elif kind == geval.KIND and env.prompt:
            asks += geval.requests(assertion, output, env, known)
        elif kind in similarity.EMBEDDING_TYPES:
            more = similarity.requests(kind, assertion, output, env, known)
            asks, texts = asks + more[0], texts + more[1]
    return asks, texts


def process_results(doc: dict, results: list) -> dict:
    """lm-eval's per-document hook of tasks imported before `hooks` (which new imports name): 1.0 when
    the reply passes the test's assertions."""
    passed, _ = grade(json.loads(doc[GRADING_FIELD]), str(results[0]))
    return {METRIC: float(passed)}


def load_tests(data_file: str, n_train: int, n_dev: int, data_dir: str = "", config_source: str = "", abo_seed=1234,
               abo_n_train=None, abo_n_dev=None, abo_n_test=None, **_ignored):
    """lm-eval's `custom_dataset` for imported tasks: the tests next to the task YAML, partitioned
    into train/dev/test with the seed (`--metadata` abo_seed, abo_n_train, abo_n_dev, abo_n_test).
    A task built from a config dict (as the optimizer builds its candidates) has no YAML path
    (config_source "inline"): then the directory recorded at import is used."""
    from lm_eval_abo.tasks.datasets import _dataset_dict, partition

    folder = Path(config_source).parent if config_source.endswith((".yaml", ".yml")) else Path(data_dir)
    path = folder / data_file
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise AboError(f"cannot read the imported tests {path}: {e}") from None
    return _dataset_dict(partition(rows, None, abo_seed, abo_n_train or n_train, abo_n_dev or n_dev, abo_n_test))
