"""The lm-eval hooks of an imported promptfoo task (its YAML names `hooks.process_results`).

`process_results` grades one document's reply (`assertions.grade`, promptfoo's pass). Before it, once per
lm-eval pass, `prepare` (which `tasks.AboTask.apply_filters` calls, with every document, the prompt lm-eval
sent for it and its replies) notes the prompts sent, which promptfoo's model-graded and code assertions
see, and has the grader answer every model-graded assertion of the pass at once (`grader.Graders.fetch`).
"""

from __future__ import annotations

import hashlib
import json

from lm_eval_abo.promptfoo import grader
from lm_eval_abo.promptfoo.assertions import GRADING_FIELD, METRIC, env_of, grade, graded_requests

_SENT: dict[str, str] = {}  # a document's key -> the prompt lm-eval sent for it, in the current pass


def doc_key(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def prepare(items: list[tuple[dict, str, list]], metadata: dict) -> None:
    """A pass's documents, each with the prompt sent and its replies: the prompts noted, the grader's
    replies fetched (`metadata`: the task's, where a grader given at run time is)."""
    graders = grader.current()
    graders.set_override(metadata)
    _SENT.clear()
    requests = []
    for doc, prompt, replies in items:
        if GRADING_FIELD not in doc:
            continue
        grading = json.loads(doc[GRADING_FIELD])
        _SENT[doc_key(doc)] = str(prompt)
        env = env_of(grading, str(prompt))
        for reply in replies:
            requests += graded_requests(grading.get("assert") or [], str(reply), env)
    if requests:
        graders.fetch(requests)


def process_results(doc: dict, results: list) -> dict:
    """lm-eval's per-document hook: 1.0 when the reply passes the test's assertions."""
    grading = json.loads(doc[GRADING_FIELD])
    passed, _ = grade(grading, str(results[0]), env_of(grading, _SENT.get(doc_key(doc))))
    return {METRIC: float(passed)}


process_results.prepare = prepare
