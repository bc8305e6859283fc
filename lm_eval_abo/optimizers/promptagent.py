"""PromptAgent (beam variant): reflection that sees the trajectory of earlier prompts and their
scores, then several new prompts per beam prompt in one call."""

from __future__ import annotations

from dataclasses import replace

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, all_tags, first_tag
from lm_eval_abo.optimizers.instructions import InstructionMethod


def trajectory(ctx: Context, node: Node, history: list[Node]) -> list[dict]:
    """The path of prompts from the root to `node`, each with its dev score."""
    by_key = {n.key: n for n in history}
    path = [node]
    while path[-1].candidate.parent in by_key and len(path) < 50:
        path.append(by_key[path[-1].candidate.parent])
    return [{"instruction": ctx.rewritable(n.prompt).instruction, "score": round(n.dev, 3)} for n in reversed(path)]


class PromptAgent(InstructionMethod):
    name = "promptagent"
    defaults = {"expand": 2, "error_batch": 5}
    paper = {"expand": 3}  # PromptAgent (beam variant): expand 3, error batch 5

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round_no: int) -> list[Candidate]:
        p = ctx.params
        jobs = []
        for node in beam:
            errors = node.train_errors()
            if errors:
                picked = ctx.rng(round_no, node.key, "errors").sample(errors, min(p["error_batch"], len(errors)))
                jobs.append((node, {
                    "task_description": ctx.task_description, "trajectory": trajectory(ctx, node, history),
                    "errors": [ctx.error(s) for s in picked],
                }))
        reasons = ctx.ask(
            f"round {round_no}: reflections", [("promptagent_reflect", {**v, "n": 1}) for _, v in jobs],
            first_tag("reason"), "reason",
        )
        jobs = [(node, v, reason) for (node, v), reason in zip(jobs, reasons) if reason]
        batches = ctx.ask(
            f"round {round_no}: new prompts",
            [("promptagent_edit", {**v, "reason": reason, "n": p["expand"]}) for _, v, reason in jobs],
            all_tags("prompt"), "prompt",
        )
        return [
            Candidate(replace(ctx.rewritable(node.prompt), instruction=text), "edit", node.key, {"reason": reason})
            for (node, _, reason), texts in zip(jobs, batches) for text in (texts or [])[: p["expand"]]
        ]

    def projected_round(self, params: dict, beam: int) -> Projected:
        shown = {"errors": params["error_batch"], "trajectory": 3}
        return Projected((Asks("promptagent_reflect", beam, shown),
                          Asks("promptagent_edit", beam, {**shown, "n": params["expand"]})), beam * params["expand"])
