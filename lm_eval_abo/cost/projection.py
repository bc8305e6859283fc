"""The projection, made before any call: per round and in total, what the optimizer and the target will use
in requests, tokens and US dollars, as ledgers (the type the run fills, so the two compare line by line).

- Calls and requests: at most what the method can make (before format retries; caches and early stops
  make them fewer): each round's optimizer calls by meta-prompt and new candidates (`Method.projected`),
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
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lm_eval_abo import metaprompts
from lm_eval_abo.cost.ledger import Ledger, Price, Usage, prices, total
from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.instructions import SCORE_EXAMPLES
from lm_eval_abo.tasks import fields
from lm_eval_abo.tasks.built import quiet_lm_eval, requests

# What each meta-prompt asks the optimizer to write, in tokens (per item where it asks for `n` of them)
REPLY_TOKENS = {
    "initial_instruction": 80, "paraphrase": 60, "apo_gradient": 80, "apo_edit": 80, "apo_sum_reflect": 120,
    "opro": 80, "promptagent_reflect": 80, "promptagent_edit": 80, "abo_procedure": 180, "abo_demonstration": 200,
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
    test: Ledger  # the baseline and the best prompt on the test documents (the target only)
    per_request: Usage  # one target request of a candidate prompt
    counted: str  # how the target's tokens were counted
    prices: dict[str, str]

    @property
    def total(self) -> Ledger:
        return total([*self.rounds, self.test])

    def last_round_within(self, config) -> int | None:
        """The last round the caps leave room for, with the test evaluation (None: not even round 0)."""
        spent, last = Ledger(), None
        for r, ledger in enumerate(self.rounds):
            spent = spent.plus(ledger)
            if not fits(spent.plus(self.test), config):
                break
            last = r
        return last

    def to_dict(self) -> dict:
        return {"rounds": [r.to_dict() for r in self.rounds], "test": self.test.to_dict(), "total": self.total.to_dict(),
                "per_request": self.per_request.to_dict(), "target_tokens": self.counted}


def fits(ledger: Ledger, config) -> bool:
    return ((config.max_cost is None or ledger.cost_usd <= config.max_cost)
            and (config.max_target_tokens is None or ledger.target.tokens <= config.max_target_tokens)
            and (config.max_optimizer_calls is None or ledger.optimizer.calls <= config.max_optimizer_calls))


def project(config, planned) -> Projection:
    """The projection of a resolved config's run on a planned session (`session.plan_session`)."""
    from lm_eval_abo.scoring import Bridge
    from lm_eval_abo.cost.tokens import target_counter

    target_price, optimizer_price = prices(config)
    method = METHODS[config.method]
    params, beam = config.method_args, config.beam
    bridge = Bridge(None, planned.task, planned.base_config, planned.splits, planned.manager, harness=planned.harness,
                    default_prompt=planned.default_prompt, metric=config.metric, answer_format=config.answer_format)
    count, exact = target_counter(config)
    baseline, question = _baseline(planned, count)
    written = sum(a.calls * (_reply(a, config) + a.shows.get("examples", 0) * question) for a in method.written(params))
    candidate = replace(baseline, prompt=baseline.prompt + written * baseline.requests)
    n_dev, n_train, n_test = len(planned.dev_indices), len(planned.train_pool), planned.n_test
    estimated = not exact
    rounds = []
    shown = min(params.get(SCORE_EXAMPLES, 0), n_train)  # train examples behind each score shown (opro, promptagent)
    engine = getattr(method, "projected_engine", None)  # a method whose later rounds are its own engine's (GEPA)
    for r in range(config.rounds + 1):
        plan = method.projected(params, beam, initial=r == 0)
        docs = plan.candidates * (n_dev + shown) + (beam * min(config.minibatch, n_train) if r and method.uses_errors else 0)
        if r and engine:
            plan, docs = engine(params, n_dev)
        optimizer = total(_optimizer(a, config, bridge, optimizer_price) for a in plan.asks).optimizer
        target = candidate.times(docs, target_price, estimated)
        if r == 0:
            target = target.plus(baseline.times(n_dev + shown, target_price, estimated))
        rounds.append(Ledger(optimizer, target))
    test = Ledger(target=baseline.times(n_test, target_price, estimated).plus(candidate.times(n_test, target_price, estimated)))
    per_request = priced(Usage(calls=1, prompt_tokens=round(candidate.prompt / candidate.requests),
                               completion_tokens=round(candidate.completion / candidate.requests)), target_price)
    counted = "counted with the target's tokenizer" if exact else "estimated at 4 characters a token"
    shown = {side: price.text() if price else "unknown (tokens only)"
             for side, price in (("target", target_price), ("optimizer", optimizer_price))}
    return Projection(rounds, test, per_request, counted, shown)


def _baseline(planned, count) -> tuple[PerDoc, float]:
    """The baseline's target use per dev document, rendered by lm-eval and counted, and the mean tokens of
    a document's question."""
    from lm_eval_abo.tasks.built import question

    part, task = planned.splits.dev, planned.config.task
    indices = [part.indices[i] for i in planned.dev_indices]
    with quiet_lm_eval():
        built = planned.manager.load([fields.task_config(planned.base_config, planned.default_prompt, task, part.split)])
    built = built["tasks"][task]
    per_doc = requests(built, planned.harness, indices)
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


def _reply(asks, config) -> int:
    cap = config.optimizer_args.get("max_tokens") or config.optimizer_args.get("max_completion_tokens")
    reply = REPLY_TOKENS.get(asks.template, 100) * asks.shows.get("n", 1)
    return min(reply, int(cap)) if cap else reply


def _optimizer(asks, config, bridge, price: Price | None) -> Ledger:
    """An optimizer call of a meta-prompt, rendered with the task's training examples, times its calls."""
    from lm_eval_abo.cost.tokens import optimizer_tokens

    if not asks.calls:
        return Ledger()
    messages = metaprompts.render(asks.template, **_variables(asks.shows, bridge))
    one = Usage(calls=1, prompt_tokens=optimizer_tokens(config.optimizer, messages), completion_tokens=_reply(asks, config))
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
