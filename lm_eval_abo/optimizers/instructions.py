"""What the instruction-rewriting (APO family) methods share: LLM-written initial instructions (the paper's
unified starting point), paraphrases of an instruction, and the members of the method contract that they
all answer the same way."""

from __future__ import annotations

from dataclasses import replace

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, first_tag

INITIAL_EXAMPLES = 5


def initial_candidates(ctx: Context, count: int) -> list[Candidate]:
    """`count` instructions induced from a few training examples (each request sees other examples)."""
    docs = ctx.bridge.docs("train")
    requests = []
    for i in range(count):
        picked = ctx.rng("initial", i).sample(ctx.train_pool, min(INITIAL_EXAMPLES, len(ctx.train_pool)))
        requests.append(("initial_instruction", {
            "examples": [ctx.example(docs[j]) for j in picked], "task_description": ctx.task_description,
        }))
    texts = ctx.ask("initial instructions", requests, first_tag("prompt"), "prompt")
    return [Candidate(replace(ctx.base_prompt, instruction=t), "initial") for t in texts if t]


def paraphrases(ctx: Context, purpose: str, sources: list[tuple[Node | Candidate, int]]) -> list[Candidate]:
    """`n` paraphrases of each source's instruction, keeping the rest of its prompt."""
    owners, requests = [], []
    for source, n in sources:
        for _ in range(n):
            owners.append(source)
            requests.append(("paraphrase", {"instruction": ctx.rewritable(source.prompt).instruction}))
    texts = ctx.ask(purpose, requests, first_tag("prompt"), "prompt")
    return [
        Candidate(replace(ctx.rewritable(src.prompt), instruction=t), "paraphrase", src.key)
        for src, t in zip(owners, texts) if t
    ]


class InstructionMethod:
    """A method that rewrites the instruction: round 0 writes `beam` initial instructions; later rounds are
    the method's own (`propose`, and `projected_round` for the projection)."""

    name: str
    defaults: dict
    paper: dict = {}
    uses_errors = True
    patience: int | None = None
    needs_generation = False  # multiple-choice tasks work: an error is the option chosen against the gold one

    def wants_errors(self, node: Node) -> bool:
        return self.uses_errors

    def initial(self, ctx: Context, beam: int) -> list[Candidate]:
        return initial_candidates(ctx, beam)

    def projected(self, params: dict, beam: int, initial: bool) -> Projected:
        if initial:
            return Projected((Asks("initial_instruction", beam, {"examples": INITIAL_EXAMPLES}),), beam)
        return self.projected_round(params, beam)

    def projected_round(self, params: dict, beam: int) -> Projected:
        raise NotImplementedError

    def written(self, params: dict) -> tuple[Asks, ...]:
        return (Asks("paraphrase", 1),)  # one written instruction in place of the task's own
