"""`promptagent`: PromptAgent (Wang et al. 2024) as its source runs it, a Monte Carlo tree search over
prompts (`tree.py`), on the one search loop.

Round 0 writes the initial instructions as every instruction method does; the best prompt after it is the
tree's root. Every later round is one expansion of the tree: `expand_width` steps on the node the search
reached, each on a fresh batch of `batch_size` train examples (the next batch of a seeded shuffle of the
train pool, reshuffled every epoch, as the source's data loader), scored with the node's prompt through
lm-eval; the optimizer reflects on the batch's errors (or, when it got all of them right, on its right
answers) and writes `num_new_prompts` new prompts from the errors, the reflection and the trajectory of
prompts from the root to the node, without scores (as the source; `score_examples` > 0 shows train
scores). The loop scores the new prompts on dev; their dev scores are the tree's rewards (negated for a
metric where lower is better), read in the next round, where the tree search goes on to its next
expansion. Selection, simulation and back-propagation happen in between, without calls. The search ends
after `iterations` iterations or at the loop's last round, whichever comes first; the loop keeps the prompt
with the best dev score, which is the source's top-reward node. With --candidates N, an expansion writes N
new prompts, dealt over its steps (at most `expand_width` of them)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Context, Node, Projected, Proposal, Round, quotas
from lm_eval_abo.optimizers.instructions import InstructionMethod, note_train_scores
from lm_eval_abo.optimizers.promptagent.transition import Step, trajectory, transitions
from lm_eval_abo.optimizers.promptagent.tree import Limits, Tree


@dataclass(frozen=True)
class PromptAgentParams:
    expand_width: int = flag("expansion steps per expansion, each on a fresh train batch", default=3)
    num_new_prompts: int = flag("new prompts per expansion step", default=1)
    batch_size: int = flag("train examples per batch; the step reflects on their errors", default=5)
    depth_limit: int = flag("the tree's deepest level (a node there is terminal)", default=8)
    min_depth: int = flag("early stops and the reward floor apply only deeper than this", default=2)
    iterations: int = flag("MCTS iterations (select, expand, simulate, back-propagate)", default=12)
    w_exp: float = flag("the weight of exploration in UCT", default=2.5)
    score_examples: int = flag("train examples behind each score in the trajectory (0: none shown, as the source)",
                               default=0)


def limits(params: PromptAgentParams) -> Limits:
    return Limits(params.expand_width, params.depth_limit, params.min_depth, params.iterations, params.w_exp)


def per_step(params: PromptAgentParams, candidates: int | None) -> list[int]:
    """The new prompts of each step of an expansion."""
    if candidates:
        return [n for n in quotas(candidates, params.expand_width) if n]
    return [params.num_new_prompts] * params.expand_width


def batches(ctx: Context, cursor: dict, count: int, size: int) -> tuple[list[list[int]], dict]:
    """The next `count` batches of the train pool, and the cursor after them: each epoch a seeded shuffle,
    cut into batches of `size` (an epoch's last one may be shorter, as a data loader's)."""
    epoch, position, out = cursor.get("epoch", 0), cursor.get("position", 0), []
    for _ in range(count):
        order = ctx.rng("promptagent batches", epoch).sample(ctx.train_pool, len(ctx.train_pool))
        out.append(order[position : position + size])
        position += size
        if position >= len(order):
            epoch, position = epoch + 1, 0
    return out, {"epoch": epoch, "position": position}


class PromptAgent(InstructionMethod):
    name = "promptagent"
    params = PromptAgentParams()
    # PromptAgent's MCTS (its search_algo/mcts.py and world model): expand_width 3, 1 new prompt per step
    # (3 in its beam search), batches of 5, depth limit 8, min depth 2, 12 iterations, w_exp 2.5; no scores shown
    paper = PromptAgentParams()
    reads_errors = False  # it draws its own batches

    def shown(self, params: PromptAgentParams) -> int:
        return params.score_examples

    def propose(self, ctx: Context, round: Round) -> Proposal:
        p, state = ctx.params, copy.deepcopy(round.state)
        by_key = {n.key: n for n in round.history}
        sign = 1.0 if ctx.task.higher_is_better else -1.0
        if state.get("tree"):
            tree = Tree.from_dict(state["tree"])
        else:
            tree = Tree.start(round.beam[0].key, sign * round.beam[0].dev, limits(p))
        if tree.expanding is not None:  # the children the loop scored (those it dropped are not in the tree)
            tree.expanded([(k, sign * by_key[k].dev) for k in state.get("pending", []) if k in by_key])
        target = tree.advance()
        if target is None:
            return Proposal(notes={"mcts": f"{tree.iteration} iterations done"}, state={**state, "tree": tree.to_dict(),
                                                                                       "pending": []},
                            finished=f"PromptAgent's tree search ran its {tree.iteration} iterations")
        node = by_key[tree.nodes[target].key]
        path = [by_key[n.key] for n in tree.path_to(target)]
        written = per_step(p, ctx.candidates)
        drawn, cursor = batches(ctx, state.get("cursor", {}), len(written), p.batch_size)
        steps = self._steps(ctx, node, drawn, written, trajectory(ctx, path, p.score_examples), target)
        candidates = transitions(ctx, f"round {round.number}", steps, p.score_examples > 0)
        note_train_scores(ctx, p.score_examples, candidates)
        notes = {"mcts": {"iteration": tree.iteration + 1, "expanding": target, "depth": tree.nodes[target].depth,
                          "path": list(tree.path), "nodes": len(tree.nodes), "threshold": tree.threshold}}
        return Proposal(candidates, notes=notes, state={"tree": tree.to_dict(), "pending": [c.key for c in candidates],
                                                         "cursor": cursor})

    def _steps(self, ctx: Context, node: Node, drawn: list[list[int]], written: list[int], path: list[dict],
               target: int) -> list[Step]:
        """One step per batch, writing `written` prompts each: the node's prompt scored on the batch; its errors,
        or its right answers if none."""
        [score] = ctx.task.score([node.prompt], "train", sorted({i for batch in drawn for i in batch}))
        by_index: dict[int, list] = {}
        for s in score.samples:  # one sample per target that answered the example
            by_index.setdefault(s.index, []).append(s)
        steps = []
        for b, (batch, n) in enumerate(zip(drawn, written)):
            samples = [s for i in batch for s in by_index[i]]
            errors = [s for s in samples if not s.correct]
            steps.append(Step(node, errors or samples, path, n, right=not errors,
                              notes={"mcts_parent": target, "batch": b}))
        return steps

    def projected_round(self, params: PromptAgentParams, beam: int, candidates: int | None = None) -> Projected:
        """An expansion: per step a reflection and the new prompts (an all-right batch asks the same number
        of calls), and the node's prompt on every batch."""
        written = per_step(params, candidates)
        width, shown = len(written), {"errors": params.batch_size, "trajectory": 3}
        return Projected((Asks("promptagent_reflect", width, shown),
                          Asks("promptagent_edit", width, {**shown, "n": max(written, default=0)})),
                         sum(written), scored=width * params.batch_size)
