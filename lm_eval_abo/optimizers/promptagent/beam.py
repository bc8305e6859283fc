"""`promptagent-beam`: PromptAgent's transition in the loop's beam search, this project's variant (PromptAgent's
code has a beam search too, with its own settings: `search_algo: beam_search`). Per beam prompt, a
reflection on a batch of its train errors from the loop's minibatch, then `expand` new prompts written from
the errors, the reflection and the trajectory of prompts from the first to the current one, each with its
score on a fixed subset of train when `score_examples` > 0 (dev only selects). With --candidates N, the N new
prompts are dealt over the beam prompts with errors."""

from __future__ import annotations

from dataclasses import dataclass, replace

from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Context, Node, Projected, Proposal, Round, quotas
from lm_eval_abo.optimizers.instructions import InstructionMethod, note_train_scores
from lm_eval_abo.optimizers.promptagent.transition import Step, trajectory, transitions


@dataclass(frozen=True)
class PromptAgentBeamParams:
    expand: int = flag("new prompts per beam prompt and round", default=2)
    error_batch: int = flag("train errors each reflection sees", default=5)
    score_examples: int = flag("train examples behind each score in the trajectory (0: no scores shown)", default=8)


def lineage(node: Node, history: list[Node]) -> list[Node]:
    """The prompts from the first one to `node`, each the parent of the next."""
    by_key = {n.key: n for n in history}
    path = [node]
    while path[-1].candidate.parent in by_key and len(path) < 50:
        path.append(by_key[path[-1].candidate.parent])
    return path[::-1]


class PromptAgentBeam(InstructionMethod):
    name = "promptagent-beam"
    params = PromptAgentBeamParams()
    # PromptAgent's beam search: 3 new prompts per beam prompt, batches of 5; its trajectory shows no scores
    paper = PromptAgentBeamParams(expand=3, score_examples=0)

    def shown(self, params: PromptAgentBeamParams) -> int:
        return params.score_examples

    def propose(self, ctx: Context, round: Round) -> Proposal:
        p = ctx.params
        steps = []
        for node in round.beam:
            errors = round.errors(node)
            if errors:
                picked = ctx.rng(round.number, node.key, "errors").sample(errors, min(p.error_batch, len(errors)))
                steps.append(Step(node, picked, trajectory(ctx, lineage(node, round.history), p.score_examples), p.expand))
        if ctx.candidates:
            steps = [replace(s, n=n) for s, n in zip(steps, quotas(ctx.candidates, len(steps))) if n]
        candidates = transitions(ctx, f"round {round.number}", steps, p.score_examples > 0)
        note_train_scores(ctx, p.score_examples, candidates)
        return Proposal(candidates)

    def projected_round(self, params: PromptAgentBeamParams, beam: int, candidates: int | None = None) -> Projected:
        written = [n for n in quotas(candidates, beam) if n] if candidates else [params.expand] * beam
        shown = {"errors": params.error_batch, "trajectory": 3}
        return Projected((Asks("promptagent_reflect", len(written), shown),
                          Asks("promptagent_edit", len(written), {**shown, "n": max(written, default=0)})), sum(written))
