"""What the instruction-rewriting (APO family) methods share: LLM-written initial instructions (the paper's
unified starting point), paraphrases of an instruction, the scores some methods show the optimizer, and
the members of the method contract that they all answer the same way."""

from __future__ import annotations

from dataclasses import replace

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, first_tag

INITIAL_EXAMPLES = 5
# The method parameter of the methods that show the optimizer scores (opro, promptagent): how many train
# examples each shown score is measured on. Every candidate they propose is scored on that fixed, seeded
# subset of train (OPRO's own code shows training accuracy), so dev stays a selection signal only.
SCORE_EXAMPLES = "score_examples"
TRAIN_SCORE = "train_score"  # the candidate note that holds it


def initial_candidates(ctx: Context, count: int) -> list[Candidate]:
    """`count` instructions induced from a few training examples (each request sees other examples)."""
    docs = ctx.bridge.docs("train")
    requests = []
    for i in range(count):
        picked = ctx.rng("initial", i).sample(ctx.train_pool, min(INITIAL_EXAMPLES, len(ctx.train_pool)))
        requests.append(("initial_instruction", {
            "examples": [ctx.example(docs[j]) for j in picked], "task_description": ctx.task_description,
        }))
    texts = ctx.ask("initial instructions", requests, first_tag("prompt"), "prompt", sample=True)
    return [Candidate(replace(ctx.base_prompt, instruction=t), "initial") for t in texts if t]


def paraphrases(ctx: Context, purpose: str, sources: list[tuple[Node | Candidate, int]]) -> list[Candidate]:
    """`n` paraphrases of each source's instruction, keeping the rest of its prompt."""
    owners, requests = [], []
    for source, n in sources:
        for _ in range(n):
            owners.append(source)
            requests.append(("paraphrase", {"instruction": ctx.rewritable(source.prompt).instruction}))
    texts = ctx.ask(purpose, requests, first_tag("prompt"), "prompt", sample=True)
    return [
        Candidate(replace(ctx.rewritable(src.prompt), instruction=t), "paraphrase", src.key)
        for src, t in zip(owners, texts) if t
    ]


def score_subset(ctx: Context) -> list[int]:
    """The fixed train examples behind every shown score (none: no scores are shown)."""
    size = min(ctx.params.get(SCORE_EXAMPLES, 0), len(ctx.train_pool))
    return sorted(ctx.rng("score subset").sample(ctx.train_pool, size))


def note_train_scores(ctx: Context, candidates: list[Candidate], with_baseline: bool = False) -> None:
    """Score new candidates on the score subset, if the method has one, and note it in each (so the score
    outlives a resume). Round 0 also scores the baseline, which the search adds itself: `train_scores` finds
    it in the bridge."""
    subset = score_subset(ctx)
    scored = [c for c in candidates if c.prompt.instruction.strip() or c.prompt.procedure]  # the search drops empty ones
    prompts = [c.prompt for c in scored] + ([ctx.bridge.default_prompt] if with_baseline else [])
    if subset and prompts:
        for candidate, score in zip(scored, ctx.bridge.score(prompts, "train", subset)):
            candidate.notes[TRAIN_SCORE] = score.value


def train_scores(ctx: Context, nodes: list[Node]) -> list[float | None]:
    """Each node's score on the score subset (None when no scores are shown): noted when it was proposed,
    else (the baseline) scored through the bridge, which scores an identical prompt and example once per run."""
    subset = score_subset(ctx)
    if not subset:
        return [None] * len(nodes)
    missing = [n.prompt for n in nodes if TRAIN_SCORE not in n.candidate.notes]
    fresh = iter(ctx.bridge.score(missing, "train", subset))
    return [n.candidate.notes[TRAIN_SCORE] if TRAIN_SCORE in n.candidate.notes else next(fresh).value for n in nodes]


class InstructionMethod:
    """A method that rewrites the instruction: round 0 writes `beam` initial instructions; later rounds are
    the method's own (`propose`, and `projected_round` for the projection)."""

    name: str
    defaults: dict
    paper: dict = {}
    choices: dict = {}
    uses_errors = True
    patience: int | None = None
    needs_generation = False  # multiple-choice tasks work: an error is the option chosen against the gold one

    def wants_errors(self, node: Node) -> bool:
        return self.uses_errors

    def initial(self, ctx: Context, beam: int) -> list[Candidate]:
        candidates = initial_candidates(ctx, beam)
        note_train_scores(ctx, candidates, with_baseline=True)  # nothing to do unless the method shows scores
        return candidates

    def projected(self, params: dict, beam: int, initial: bool) -> Projected:
        if initial:
            return Projected((Asks("initial_instruction", beam, {"examples": INITIAL_EXAMPLES}),), beam)
        return self.projected_round(params, beam)

    def projected_round(self, params: dict, beam: int) -> Projected:
        raise NotImplementedError

    def written(self, params: dict) -> tuple[Asks, ...]:
        return (Asks("paraphrase", 1),)  # one written instruction in place of the task's own
