"""OPRO: implicit reflection. The optimizer sees earlier prompts with their scores on a fixed subset of
train (lowest to highest, as OPRO's own code shows training accuracy; dev only selects) and a few
training examples, and writes prompts meant to score higher (`new_prompts` a round; --candidates: that many)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Projected, Proposal, Round, first_tag
from lm_eval_abo.optimizers.instructions import InstructionMethod, note_train_scores, percent, train_scores


@dataclass(frozen=True)
class OproParams:
    new_prompts: int = flag("new prompts per round", default=4)
    history: int = flag("earlier prompts shown, the best ones, lowest to highest", default=20)
    exemplars: int = flag("training questions shown", default=3)
    score_examples: int = flag("train examples behind each shown score (0: no scores shown)", default=8)


class Opro(InstructionMethod):
    name = "opro"
    params = OproParams()
    # OPRO: 8 prompts per step, the 20 best earlier ones shown, 3 exemplars, scores on its train split (BBH: 20%, 50 examples)
    paper = OproParams(new_prompts=8, score_examples=50)
    reads_errors = False

    def shown(self, params: OproParams) -> int:
        return params.score_examples

    def propose(self, ctx: Context, round: Round) -> Proposal:
        p, round_no = ctx.params, round.number
        sign = 1 if ctx.task.higher_is_better else -1
        scores: dict[str, float | None] = {}  # each instruction once, with the best score among its prompts
        for node, score in zip(round.history, train_scores(ctx, p.score_examples, round.history)):
            instruction = ctx.rewritable(node.prompt).instruction
            if instruction not in scores or (score is not None and sign * score > sign * scores[instruction]):
                scores[instruction] = score
        ranked = sorted(scores.items(), key=lambda item: sign * (item[1] or 0.0))  # lowest first (as proposed, without scores)
        shown = [{"instruction": text, "score": None if score is None else percent(score)}
                 for text, score in ranked[max(len(ranked) - p.history, 0) :]]
        docs = ctx.task.docs("train")
        requests = []
        for i in range(ctx.candidates or p.new_prompts):
            picked = ctx.rng(round_no, "exemplars", i).sample(ctx.train_pool, min(p.exemplars, len(ctx.train_pool)))
            requests.append(("opro", {
                "task_description": ctx.task_description, "history": shown, "scored": p.score_examples > 0,
                "examples": [ctx.example(docs[j]) for j in picked],
            }))
        texts = ctx.ask(f"round {round_no}: new prompts", requests, first_tag("prompt"), "prompt", sample=True)
        best = round.beam[0]
        candidates = [Candidate(replace(ctx.rewritable(best.prompt), instruction=t), "opro", best.key) for t in texts if t]
        note_train_scores(ctx, p.score_examples, candidates)
        return Proposal(candidates)

    def projected_round(self, params: OproParams, beam: int, candidates: int | None = None) -> Projected:
        shown, written = {"history": params.history, "examples": params.exemplars}, candidates or params.new_prompts
        return Projected((Asks("opro", written, shown),), written)
