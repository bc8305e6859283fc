"""OPRO: implicit reflection. The optimizer sees earlier prompts with their dev scores (lowest to
highest) and a few training examples, and writes prompts meant to score higher."""

from __future__ import annotations

from dataclasses import replace

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, first_tag
from lm_eval_abo.optimizers.instructions import InstructionMethod


class Opro(InstructionMethod):
    name = "opro"
    defaults = {"new_prompts": 4, "history": 20, "exemplars": 3}
    paper = {"new_prompts": 8}  # OPRO: 8 prompts per step, the 20 best earlier ones shown, 3 exemplars
    uses_errors = False

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round_no: int) -> list[Candidate]:
        p = ctx.params
        sign = 1 if ctx.bridge.higher_is_better else -1
        best_by_instruction: dict[str, Node] = {}
        for node in history:
            instruction = ctx.rewritable(node.prompt).instruction
            known = best_by_instruction.get(instruction)
            if known is None or sign * node.dev > sign * known.dev:
                best_by_instruction[instruction] = node
        shown = sorted(best_by_instruction.values(), key=lambda n: sign * n.dev)[-p["history"] :]
        docs = ctx.bridge.docs("train")
        requests = []
        for i in range(p["new_prompts"]):
            picked = ctx.rng(round_no, "exemplars", i).sample(ctx.train_pool, min(p["exemplars"], len(ctx.train_pool)))
            requests.append(("opro", {
                "task_description": ctx.task_description,
                "history": [{"instruction": ctx.rewritable(n.prompt).instruction, "score": round(100 * n.dev)} for n in shown],
                "examples": [ctx.example(docs[j]) for j in picked],
            }))
        texts = ctx.ask(f"round {round_no}: new prompts", requests, first_tag("prompt"), "prompt")
        best = beam[0]
        return [Candidate(replace(ctx.rewritable(best.prompt), instruction=t), "opro", best.key) for t in texts if t]

    def projected_round(self, params: dict, beam: int) -> Projected:
        shown = {"history": params["history"], "examples": params["exemplars"]}
        return Projected((Asks("opro", params["new_prompts"], shown),), params["new_prompts"])
