"""What the instruction-rewriting (APO family) methods share: LLM-written initial instructions (the paper's
unified starting point), paraphrases of an instruction, the scores some methods show the optimizer, and
the members of the method contract that they all answer the same way."""

from __future__ import annotations

from dataclasses import replace

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, Proposal, first_tag

INITIAL_EXAMPLES = 5
PARAPHRASE = "paraphrase"  # the origin of a resampled candidate: an instruction reworded, no error seen
TRAIN_SCORE = "train_score"  # the candidate note that holds a shown score (see `note_train_scores`)


def initial_candidates(ctx: Context, count: int) -> list[Candidate]:
    """`count` instructions induced from a few training examples (each request sees other examples)."""
    docs = ctx.task.docs("train")
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
        Candidate(replace(ctx.rewritable(src.prompt), instruction=t), PARAPHRASE, src.key)
        for src, t in zip(owners, texts) if t
    ]


# --- the scores OPRO and PromptAgent show the optimizer: on a fixed, seeded subset of train -------------
# Every candidate they propose is scored on that subset (OPRO's own code shows training accuracy), so dev
# stays a selection signal only. `examples`: the method's `score_examples` (0: no scores are shown).


def score_subset(ctx: Context, examples: int) -> list[int]:
    """The fixed train examples behind every shown score."""
    return sorted(ctx.rng("score subset").sample(ctx.train_pool, min(examples, len(ctx.train_pool))))


def note_train_scores(ctx: Context, examples: int, candidates: list[Candidate], with_baseline: bool = False) -> None:
    """Score new candidates on the score subset and note it in each (so the score outlives a resume). Round
    0 also scores the baseline, which the search adds itself: `train_scores` finds it in the bridge."""
    subset = score_subset(ctx, examples)
    scored = [c for c in candidates if c.prompt.instruction.strip() or c.prompt.procedure]  # the search drops empty ones
    prompts = [c.prompt for c in scored] + ([ctx.task.default_prompt] if with_baseline else [])
    if subset and prompts:
        for candidate, score in zip(scored, ctx.task.score(prompts, "train", subset)):
            candidate.notes[TRAIN_SCORE] = score.value


def train_scores(ctx: Context, examples: int, nodes: list[Node]) -> list[float | None]:
    """Each node's score on the score subset (None when no scores are shown): noted when it was proposed,
    else (the baseline) scored through the bridge, which scores an identical prompt and example once per run."""
    subset = score_subset(ctx, examples)
    if not subset:
        return [None] * len(nodes)
    missing = [n.prompt for n in nodes if TRAIN_SCORE not in n.candidate.notes]
    fresh = iter(ctx.task.score(missing, "train", subset))
    return [n.candidate.notes[TRAIN_SCORE] if TRAIN_SCORE in n.candidate.notes else next(fresh).value for n in nodes]


def percent(score: float) -> int:
    """A shown score, as a whole percentage."""
    return round(100 * score)


class InstructionMethod:
    """A method that rewrites the instruction: round 0 writes `beam` initial instructions (--candidates: that
    many); later rounds are the method's own (`propose`, and `projected_round` for the projection)."""

    name: str
    params: object
    paper: object
    reads_errors = True  # whether later rounds reflect on the beam's train errors
    patience: int | None = None
    needs_generation = False  # multiple-choice tasks work: an error is the option chosen against the gold one

    def shown(self, params) -> int:
        """Train examples behind the score each candidate is shown with (0: none shown)."""
        return 0

    def wants_errors(self, node: Node) -> bool:
        return self.reads_errors

    def initial(self, ctx: Context, beam: int) -> Proposal:
        candidates = initial_candidates(ctx, ctx.candidates or beam)
        # nothing to score unless the method shows scores
        note_train_scores(ctx, self.shown(ctx.params), candidates, with_baseline=True)
        return Proposal(candidates)

    def projected(self, params, beam: int, initial: bool, n_dev: int, candidates: int | None = None) -> Projected:
        if initial:
            written = candidates or beam
            found = Projected((Asks("initial_instruction", written, {"examples": INITIAL_EXAMPLES}),), written)
        else:
            found = replace(self.projected_round(params, beam, candidates), reads_errors=self.reads_errors)
        return replace(found, shown=self.shown(params))

    def projected_round(self, params, beam: int, candidates: int | None = None) -> Projected:
        raise NotImplementedError

    def written(self, params) -> tuple[Asks, ...]:
        return (Asks("paraphrase", 1),)  # one written instruction in place of the task's own
