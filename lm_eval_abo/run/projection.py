"""The projection, made before any call: per round and in total, what the optimizer and the target will use
in requests, tokens and US dollars, as ledgers (the type the run fills, so the two compare line by line).

- Calls and requests: at most what the method can make (before format retries; caches and early stops
  make them fewer): each round's optimizer calls by meta-prompt and new candidates, as the method declares
  them (`Method.projected`),
  the candidates and the baseline on every dev document (and on the train examples behind the scores
  OPRO and PromptAgent show), the beam's train batches, a GEPA round's metric-call budget, and the test
  evaluation of the baseline and the best prompt.
- The target's tokens: the task's real prompts, the baseline rendered by lm-eval on the dev documents and
  counted with the target's tokenizer (estimated where none loads without the model); a candidate adds
  what the method writes into a prompt (`Method.written`: an instruction, ABO's procedure and
  demonstrations) at the sizes below; every reply is counted at the task's `max_gen_toks` cap.
- The optimizer's tokens: each meta-prompt rendered with the task's own training examples and counted
  through litellm; each reply at the size the meta-prompt asks for (below), at most `max_tokens` if
  --optimizer_args sets it.
- The grader's calls, where the task's metric asks a model (its `process_results` has a
  `projected_grading` hook, e.g. an imported promptfoo task with llm-rubric): its grading requests of the
  dev documents, each target reply at its max_gen_toks cap, times the documents each pass scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lm_eval_abo.cost.ledger import Caps, Ledger, Price, Usage, total
from lm_eval_abo.cost.prices import Prices
from lm_eval_abo.cost.tokens import optimizer_tokens, target_counter
from lm_eval_abo.infra import metaprompts
from lm_eval_abo.optimizers.base import Method
from lm_eval_abo.tasks import fields
from lm_eval_abo.tasks.built import question, quiet_lm_eval, requests

# What each meta-prompt asks the optimizer to write, in tokens (per item where it asks for `n` of them)
REPLY_TOKENS = {
    "initial_instruction": 80, "paraphrase": 60, "apo_gradient": 80, "apo_edit": 80, "apo_sum_reflect": 120,
    "opro": 80, "promptagent_reflect": 80, "promptagent_edit": 80, "promptagent_reflect_right": 80,
    "promptagent_edit_right": 80, "abo_procedure": 180, "abo_demonstration": 200,
    "abo_locate": 60, "abo_revise": 180, "abo_revise_step": 80,
}
MAX_GEN_TOKS = 256  # what lm-eval's backends generate when a task does not say
STEP = "Find every item the question names and write it down with its count."  # a procedure step's size


@dataclass(frozen=True)
class PerDoc:
    """The target's use for one document: requests, prompt and completion tokens (means)."""

    requests: float
    prompt: float
    completion: float

    def times(self, docs: int, price: Price | None, estimated: bool) -> Usage:
        usage = Usage(calls=round(self.requests * docs), prompt_tokens=round(self.prompt * docs),
                      completion_tokens=round(self.completion * docs), estimated=estimated)
        return priced(usage, price)


def priced(usage: Usage, price: Price | None) -> Usage:
    cost = price.cost(usage.prompt_tokens, usage.completion_tokens) if price else 0.0
    return replace(usage, cost_usd=cost, cost_known=price is not None)


@dataclass
class Projection:
    rounds: list[Ledger]
    test: Ledger  # the baseline and the best prompt on the test documents (the target, and the grader if any)
    per_request: Usage  # one target request of a candidate prompt
    counted: str  # how the target's tokens were counted
    prices: dict[str, str]
    grader_per_request: Usage = field(default_factory=Usage)  # the grader's use per target request (none: no grader)

    @property
    def total(self) -> Ledger:
        return total([*self.rounds, self.test])

    def last_round_within(self, caps: Caps) -> int | None:
        """The last round the caps leave room for, with the test evaluation (None: not even round 0)."""
        spent, last = Ledger(), None
        for r, ledger in enumerate(self.rounds):
            spent = spent.plus(ledger)
            if not caps.fit(spent.plus(self.test)):
                break
            last = r
        return last

    def to_dict(self) -> dict:
        return {"rounds": [r.to_dict() for r in self.rounds], "test": self.test.to_dict(), "total": self.total.to_dict(),
                "per_request": self.per_request.to_dict(), "target_tokens": self.counted,
                **({"grader_per_request": self.grader_per_request.to_dict()} if self.grader_per_request.calls else {})}


def project(session, method: Method, params, prices: Prices, optimizer: str, reply_cap: int | None) -> Projection:
    """The projection of a run of `method` with `params` on a planned session (`session.plan_session`):
    `optimizer` is the optimizer's model string, `reply_cap` the most tokens it may write in a reply."""
    bridge, sizes = session.bridge, session.sizes
    count, exact = target_counter(session.target_spec.model, session.target_spec.args)
    baseline, question_tokens = _baseline(session, count)
    written = sum(a.calls * (_reply(a, reply_cap) + a.shows.get("examples", 0) * question_tokens)
                  for a in method.written(params))
    candidate = replace(baseline, prompt=baseline.prompt + written * baseline.requests)
    n_dev, n_train, n_test = len(session.dev_indices), len(session.train_pool), session.n_test
    estimated = not exact
    grading, sampled = _grading(session, optimizer, prices.optimizer)  # the grader's use on `sampled` documents
    rounds = []
    for r in range(sizes.rounds + 1):
        plan = method.projected(params, sizes.beam, r == 0, n_dev, sizes.candidates)
        shown = min(plan.shown, n_train)  # train examples behind each score shown (opro, promptagent)
        minibatches = sizes.beam * min(sizes.minibatch, n_train) if r and plan.reads_errors else 0
        docs = plan.candidates * (n_dev + shown) + min(plan.scored, n_train) + minibatches
        if plan.engine_requests is not None:  # a round an engine of its own runs (GEPA)
            docs = plan.engine_requests
        asked = total(_optimizer(a, optimizer, reply_cap, bridge, prices.optimizer) for a in plan.asks).optimizer
        target = candidate.times(docs, prices.target, estimated)
        graded = grading.scaled((docs + (n_dev + shown if r == 0 else 0)) / sampled)
        if r == 0:
            target = target.plus(baseline.times(n_dev + shown, prices.target, estimated))
        rounds.append(Ledger(asked, target, graded))
    test = Ledger(target=baseline.times(n_test, prices.target, estimated).plus(candidate.times(n_test, prices.target,
                                                                                                 estimated)),
                  grader=grading.scaled(2 * n_test / sampled))
    per_request = priced(Usage(calls=1, prompt_tokens=round(candidate.prompt / candidate.requests),
                               completion_tokens=round(candidate.completion / candidate.requests)), prices.target)
    counted = "counted with the target's tokenizer" if exact else "estimated at 4 characters a token"
    grader_per_request = grading.scaled(1 / (sampled * max(baseline.requests, 1)))
    return Projection(rounds, test, per_request, counted, prices.shown(), grader_per_request)


def joint(projections: dict[str, Projection]) -> Projection:
    """The projection of a run with several targets from each target's (by label): the optimizer's use once
    (every target is scored on the same candidates), the targets' and the grader's summed; a target request
    at the dearest target's size and price."""
    first, every = next(iter(projections.values())), list(projections.values())

    def merged(ledgers: list[Ledger]) -> Ledger:
        summed = total(ledgers)
        return Ledger(ledgers[0].optimizer, summed.target, summed.grader)

    rounds = [merged(list(side)) for side in zip(*(p.rounds for p in every))]
    per_request = max((p.per_request for p in every), key=lambda u: (u.cost_usd, u.tokens))
    prices = {**first.prices, "target": "; ".join(f"{label} {p.prices['target']}" for label, p in projections.items())}
    return Projection(rounds, merged([p.test for p in every]), per_request, first.counted, prices,
                      max((p.grader_per_request for p in every), key=lambda u: (u.cost_usd, u.tokens)))


def _grading(session, optimizer: str, optimizer_price: Price | None) -> tuple[Usage, int]:
    """The grader's use on the dev documents, and how many they are (nothing when the task's metric asks no
    model)."""
    bridge = session.bridge
    hook = getattr(bridge.reference.config.process_results, "projected_grading", None)
    docs = [bridge.docs("dev")[i] for i in session.dev_indices] or bridge.docs("train")
    if not callable(hook) or not docs:
        return Usage(), 1
    max_gen_toks = int((bridge.reference.config.generation_kwargs or {}).get("max_gen_toks", MAX_GEN_TOKS))
    return hook(docs, max_gen_toks, optimizer, optimizer_price, dict(bridge.reference.config.metadata or {})), len(docs)


def _baseline(session, count) -> tuple[PerDoc, float]:
    """The baseline's target use per dev document, rendered by lm-eval and counted, and the mean tokens of
    a document's question."""
    bridge = session.bridge
    part, task = bridge.splits.dev, bridge.task
    indices = [part.indices[i] for i in session.dev_indices]
    with quiet_lm_eval():
        built = bridge.manager.load([fields.task_config(bridge.base_config, bridge.default_prompt, task, part.split)])
    built = built["tasks"][task]
    per_doc = requests(built, bridge.harness, indices)
    sent = prompt = completion = 0
    for doc in per_doc:
        for args in doc:
            sent += 1
            if built.OUTPUT_TYPE == "generate_until":
                prompt += count(_text(args[0]))
                completion += int(args[1].get("max_gen_toks", MAX_GEN_TOKS))
            else:
                prompt += count(_text(args[0]) + _text(args[1]))
    docs = max(len(per_doc), 1)
    questions = [count(question(built, built.eval_docs[i])) for i in indices] or [0]
    return PerDoc(sent / docs, prompt / docs, completion / docs), sum(questions) / len(questions)


def _text(context) -> str:
    return str(getattr(context, "prompt", context))


def _reply(asks, cap: int | None) -> int:
    reply = REPLY_TOKENS.get(asks.template, 100) * asks.shows.get("n", 1)
    return min(reply, int(cap)) if cap else reply


def _optimizer(asks, optimizer: str, cap: int | None, bridge, price: Price | None) -> Ledger:
    """An optimizer call of a meta-prompt, rendered with the task's training examples, times its calls."""
    if not asks.calls:
        return Ledger()
    messages = metaprompts.render(asks.template, **_variables(asks.shows, bridge))
    one = Usage(calls=1, prompt_tokens=optimizer_tokens(optimizer, messages), completion_tokens=_reply(asks, cap))
    return Ledger(optimizer=priced(one.scaled(asks.calls), price))


def _variables(shows: dict, bridge) -> dict:
    """Values for any meta-prompt: the task's own training examples, lists as long as `shows` says."""
    docs = bridge.docs("train") or bridge.docs("dev")

    def examples(n: int) -> list[dict]:
        return [{"question": bridge.question(docs[i % len(docs)]), "target": bridge.gold(docs[i % len(docs)])}
                for i in range(n)]

    instruction = bridge.default_prompt.instruction or bridge.task_description
    reply = " ".join([STEP] * 3)
    errors = [{**e, "output": (e["question"] + " " + reply)[:500], "answer": e["target"], "why": STEP}
              for e in examples(shows.get("errors", 0))]
    first = (examples(1) or [{"question": "", "target": ""}])[0]
    return {
        "task_description": bridge.task_description, "answer_format": bridge.answer_format or "End with the answer.",
        "instruction": instruction, "examples": examples(shows.get("examples", 0)), "errors": errors, "reason": reply,
        "n": shows.get("n", 1), "history": [{"instruction": instruction, "score": 50}] * shows.get("history", 0),
        "trajectory": [{"instruction": instruction, "score": 0.5}] * shows.get("trajectory", 0),
        "procedure": [STEP] * max(shows.get("procedure", 0), 1), "step": 1, "kind": "wrong", "question": first["question"],
        "target": first["target"], "output": reply, "answer": first["target"], "target_hint": first["target"],
        "min_steps": 3, "max_steps": 7, "scored": True, "analyses": [reply] * shows.get("errors", 0), "summary": reply,
    }
