"""The lm-eval hooks of an imported promptfoo task (its YAML names `hooks.process_results`).

`process_results` grades one document's reply (`assertions.grade`, promptfoo's pass). Before it, once per
lm-eval pass, `prepare` (which `tasks.AboTask.apply_filters` calls, with every document, the prompt lm-eval
sent for it and its replies) notes the prompts sent, which promptfoo's model-graded and code assertions
see, and has the grader answer every model-graded assertion of the pass at once, and the embedding model
embed every text (`grader.Graders.fetch`), step by step where a request needs an earlier reply.
`projected_grading` is what the run's projection expects the grader to use per document.
"""

from __future__ import annotations

import hashlib
import json

from lm_eval_abo.cost.ledger import Price, Usage
from lm_eval_abo.cost.prices import optimizer_price
from lm_eval_abo.cost.tokens import embedding_tokens, optimizer_tokens
from lm_eval_abo.promptfoo import grader
from lm_eval_abo.promptfoo.assertions import GRADING_FIELD, METRIC, base_type, env_of, grade, graded_requests

# what each grading prompt asks the grader to write, in tokens (a JSON verdict; closedqa reasons first)
REPLY_TOKENS = {"llm-rubric": 60, "factuality": 80, "model-graded-factuality": 80, "model-graded-closedqa": 200,
                "g-eval": 60, "answer-relevance": 20}

MAX_STEPS = 5  # a request may need the replies before it (g-eval: steps, evaluation; answer-relevance: 3 questions, embeddings)
_SENT: dict[str, str] = {}  # a document's key -> the prompt lm-eval sent for it, in the current pass


def doc_key(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def prepare(items: list[tuple[dict, str, list]], metadata: dict) -> None:
    """A pass's documents, each with the prompt sent and its replies: the prompts noted, the grader's
    replies and the embeddings fetched (`metadata`: the task's, where a grader given at run time is); a
    second step that needs the first's replies (g-eval, answer-relevance) is fetched after it."""
    graders = grader.current()
    graders.set_override(metadata)
    graders.new_pass()
    _SENT.clear()
    graded = []
    for doc, prompt, replies in items:
        if GRADING_FIELD not in doc:
            continue
        grading = json.loads(doc[GRADING_FIELD])
        _SENT[doc_key(doc)] = str(prompt)
        graded += [(grading.get("assert") or [], str(reply), env_of(grading, str(prompt))) for reply in replies]
    for _ in range(MAX_STEPS):
        asks, texts = [], []
        for asserts, reply, env in graded:
            more = graded_requests(asserts, reply, env, graders.known)
            asks, texts = asks + more[0], texts + more[1]
        if not asks and not texts:
            return
        graders.fetch(asks, texts)


def process_results(doc: dict, results: list) -> dict:
    """lm-eval's per-document hook: 1.0 when the reply passes the test's assertions."""
    grading = json.loads(doc[GRADING_FIELD])
    passed, _ = grade(grading, str(results[0]), env_of(grading, _SENT.get(doc_key(doc))))
    return {METRIC: float(passed)}


def projected_grading(docs: list[dict], reply_tokens: int, optimizer: str, price: Price | None, metadata: dict) -> Usage:
    """The grader's calls, tokens and dollars for scoring `docs`: each model-graded assertion asked about a
    reply of `reply_tokens` tokens (the run's optimizer at `price` where it grades), a second step with the
    first's replies at their expected length; each text embedded counted as one call."""
    graders = grader.Graders(default=(optimizer, {}), cache_dir=None)
    graders.set_override(metadata)
    filler = " ".join(["word"] * reply_tokens)
    used = Usage()

    def counted(model: str, prompt: int, completion: int) -> None:
        found = price if model == optimizer and price is not None else optimizer_price(model)
        used.calls += 1
        used.add(prompt, completion, found.cost(prompt, completion) if found else None)

    for doc in docs:
        grading = json.loads(doc[GRADING_FIELD])
        asks, texts = graded_requests(grading.get("assert") or [], filler, env_of(grading), _expected_reply)
        for assertion, messages, _ in asks:
            model, args = graders.model_of(assertion)
            completion = min(REPLY_TOKENS[base_type(assertion["type"])[0]], int(args.get("max_tokens") or 1024))
            counted(model, optimizer_tokens(model, messages), completion)
        for assertion, text in texts:
            model = graders.embedder_of(assertion)[0]
            counted(model, embedding_tokens(model, text), 0)
    return used


def _expected_reply(assertion: dict, *_request) -> tuple[bool, str]:
    """A first step's reply as long as one is expected to be (g-eval's steps, answer-relevance's question)."""
    words = " ".join(["word"] * REPLY_TOKENS[base_type(assertion["type"])[0]])
    return True, json.dumps({"steps": [words]}) if base_type(assertion["type"])[0] == "g-eval" else words


def grades_with_model(docs: list[dict]) -> bool:
    """Whether grading these documents asks the grader (a model-graded assertion in any of them)."""
    return any(any(graded_requests(json.loads(d[GRADING_FIELD]).get("assert") or [], "", env_of({}, "x")))
               for d in docs if GRADING_FIELD in d)


process_results.prepare = prepare
process_results.grades_with_model = grades_with_model
process_results.projected_grading = projected_grading
