"""promptfoo's deterministic assertions in Python, and the lm-eval hooks of imported promptfoo tasks.

An imported task keeps each test's grading as JSON in the document field `promptfoo_grading`:
`{"assert": [...], "threshold": ...}`, defaultTest's assertions first, `{{ var }}` references already
filled in. `process_results` grades the target's reply with it as promptfoo 0.120.0 does
(`runAssertions`): each assertion scores 1 or 0; a zero-weight assertion always passes; the test score
is the weighted mean; the test passes when no assertion failed or, with a non-zero threshold, when the
score reaches it. The task's metric `pass_rate` is the mean of passes, i.e. promptfoo's pass rate.
"""

from __future__ import annotations

import json
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.promptfoo import checks

SUPPORTED = checks.SUPPORTED
GRADING_FIELD = "promptfoo_grading"
METRIC = "pass_rate"


def base_type(kind: str) -> tuple[str, bool]:
    """An assertion type without its `not-` prefix, and whether it was negated."""
    return (kind[4:], True) if kind.startswith("not-") else (kind, False)


def check(assertion: dict, output: str) -> bool:
    """One assertion on one reply."""
    return _result(assertion, output)[0]


def _result(assertion: dict, output: str) -> tuple[bool, float]:
    if assertion.get("type") == "assert-set":
        return grade(assertion, output)
    kind, negated = base_type(assertion["type"])
    if kind not in SUPPORTED:
        raise AboError(f"unsupported assertion type {assertion['type']!r}")
    return checks.check(kind, negated, assertion.get("value"), output, assertion)


def grade(grading: dict, output: str) -> tuple[bool, float]:
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
        ok, score = _result(assertion, output)
        ok = ok or (weight == 0 and assertion.get("type") != "assert-set")  # runAssertion's rule, not a set's
        total += weight * score
        weights += weight
        failed = failed or not ok
    score = total / weights if weights > 0 else 0.0
    threshold = grading.get("threshold")
    return (score >= threshold if threshold else not failed), score


def process_results(doc: dict, results: list) -> dict:
    """lm-eval's per-document hook: 1.0 when the reply passes the test's assertions."""
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
