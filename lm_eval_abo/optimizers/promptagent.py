"""PromptAgent (beam variant), as its reference code does it: per beam prompt, a reflection on a batch of
train errors (an analysis of each error, then a summary of what to improve), then several new prompts
written from the errors, the reflection and the trajectory of prompts from the first to the current one,
each with its score on a fixed subset of train (dev only selects)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from lm_eval_abo.infra import metaprompts
from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, Proposal, Round, all_tags, first_tag
from lm_eval_abo.optimizers.instructions import InstructionMethod, note_train_scores, percent, train_scores


@dataclass(frozen=True)
class PromptAgentParams:
    expand: int = flag("new prompts per beam prompt and round", default=2)
    error_batch: int = flag("train errors each reflection sees", default=5)
    score_examples: int = flag("train examples behind each score in the trajectory (0: no scores shown)", default=8)


def trajectory(ctx: Context, node: Node, history: list[Node]) -> list[dict]:
    """The path of prompts from the root to `node`, each with its score on the score subset."""
    by_key = {n.key: n for n in history}
    path = [node]
    while path[-1].candidate.parent in by_key and len(path) < 50:
        path.append(by_key[path[-1].candidate.parent])
    path.reverse()
    return [{"instruction": ctx.rewritable(n.prompt).instruction, "score": None if s is None else percent(s)}
            for n, s in zip(path, train_scores(ctx, ctx.params.score_examples, path))]


def reflection(text: str) -> dict | None:
    """The analyses of the errors, one each, and their summary (required)."""
    summary = first_tag("summary")(text)
    return {"analyses": metaprompts.tagged(text, "analysis"), "summary": summary} if summary else None


class PromptAgent(InstructionMethod):
    name = "promptagent"
    params = PromptAgentParams()
    paper = PromptAgentParams(expand=3)  # PromptAgent (beam variant): expand 3, error batch 5; its trajectory shows no scores

    def shown(self, params: PromptAgentParams) -> int:
        return params.score_examples

    def propose(self, ctx: Context, round: Round) -> Proposal:
        p, round_no = ctx.params, round.number
        jobs = []
        for node in round.beam:
            errors = round.errors(node)
            if errors:
                picked = ctx.rng(round_no, node.key, "errors").sample(errors, min(p.error_batch, len(errors)))
                jobs.append((node, {
                    "task_description": ctx.task_description, "instruction": ctx.rewritable(node.prompt).instruction,
                    "errors": [ctx.error(s) for s in picked],
                }))
        reflections = ctx.ask(f"round {round_no}: reflections", [("promptagent_reflect", v) for _, v in jobs],
                              reflection, "summary")
        jobs = [(node, v, r) for (node, v), r in zip(jobs, reflections) if r]
        batches = ctx.ask(
            f"round {round_no}: new prompts",
            [("promptagent_edit", {**v, **r, "trajectory": trajectory(ctx, node, round.history),
                                   "scored": p.score_examples > 0, "n": p.expand}) for node, v, r in jobs],
            all_tags("prompt"), "prompt", sample=True,
        )
        candidates = [
            Candidate(replace(ctx.rewritable(node.prompt), instruction=text), "edit", node.key, {"reason": r["summary"]})
            for (node, _, r), texts in zip(jobs, batches) for text in (texts or [])[: p.expand]
        ]
        note_train_scores(ctx, p.score_examples, candidates)
        return Proposal(candidates)

    def projected_round(self, params: PromptAgentParams, beam: int) -> Projected:
        shown = {"errors": params.error_batch, "trajectory": 3}
        return Projected((Asks("promptagent_reflect", beam, shown),
                          Asks("promptagent_edit", beam, {**shown, "n": params.expand})), beam * params.expand)
