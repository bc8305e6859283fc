"""OPRO: implicit reflection. The optimizer sees earlier prompts with their scores on a fixed subset of
train (lowest to highest, as OPRO's own code shows training accuracy; dev only selects) and a few
training examples, and writes prompts meant to score higher."""

from __future__ import annotations

from dataclasses import replace

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, first_tag
from lm_eval_abo.optimizers.instructions import SCORE_EXAMPLES, InstructionMethod, note_train_scores, train_scores


class Opro(InstructionMethod):
    name = "opro"
    defaults = {"new_prompts": 4, "history": 20, "exemplars": 3, SCORE_EXAMPLES: 8}
    # OPRO: 8 prompts per step, the 20 best earlier ones shown, 3 exemplars, scores on its train split (BBH: 20%, 50 examples)
    paper = {"new_prompts": 8, SCORE_EXAMPLES: 50}
    uses_errors = False

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round_no: int) -> list[Candidate]:
        p = ctx.params
        sign = 1 if ctx.bridge.higher_is_better else -1
        scores: dict[str, float | None] = {}  # each instruction once, with the best score among its prompts
        for node, score in zip(history, train_scores(ctx, history)):
            instruction = ctx.rewritable(node.prompt).instruction
            if instruction not in scores or (score is not None and sign * score > sign * scores[instruction]):
                scores[instruction] = score
        ranked = sorted(scores.items(), key=lambda item: sign * (item[1] or 0.0))  # lowest first (as proposed, without scores)
        shown = [{"instruction": text, "score": None if score is None else round(100 * score)}
                 for text, score in ranked[max(len(ranked) - p["history"], 0) :]]
        docs = ctx.bridge.docs("train")
        requests = []
        for i in range(p["new_prompts"]):
            picked = ctx.rng(round_no, "exemplars", i).sample(ctx.train_pool, min(p["exemplars"], len(ctx.train_pool)))
            requests.append(("opro", {
                "task_description": ctx.task_description, "history": shown, "scored": p[SCORE_EXAMPLES] > 0,
                "examples": [ctx.example(docs[j]) for j in picked],
            }))
        texts = ctx.ask(f"round {round_no}: new prompts", requests, first_tag("prompt"), "prompt", sample=True)
        best = beam[0]
        candidates = [Candidate(replace(ctx.rewritable(best.prompt), instruction=t), "opro", best.key) for t in texts if t]
        note_train_scores(ctx, candidates)
        return candidates

    def projected_round(self, params: dict, beam: int) -> Projected:
        shown = {"history": params["history"], "examples": params["exemplars"]}
        return Projected((Asks("opro", params["new_prompts"], shown),), params["new_prompts"])
