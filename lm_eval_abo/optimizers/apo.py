"""Reflection methods on explicit errors.

`apo` (ProTeGi): per beam prompt, groups of train errors each get a "textual gradient" (a reason the
prompt failed), each gradient an edit, each edit some paraphrases.
`apo-sum`: one reflection summarising all errors of a beam prompt, then edits and paraphrases.
"""

from __future__ import annotations

from dataclasses import replace

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, first_tag
from lm_eval_abo.optimizers.instructions import InstructionMethod, paraphrases


def edit_and_paraphrase(ctx: Context, round_no: int, jobs: list[tuple[Node, list[dict], str]], edits: int, n_paraphrases: int) -> list[Candidate]:
    """For each (node, errors shown, reason): `edits` rewritten instructions, then paraphrases of each."""
    owners, requests = [], []
    for node, errors, reason in jobs:
        for _ in range(edits):
            owners.append((node, reason))
            requests.append(("apo_edit", {
                "task_description": ctx.task_description, "instruction": ctx.rewritable(node.prompt).instruction,
                "errors": errors, "reason": reason,
            }))
    texts = ctx.ask(f"round {round_no}: edits", requests, first_tag("prompt"), "prompt")
    edited = [
        Candidate(replace(ctx.rewritable(node.prompt), instruction=t), "edit", node.key, {"reason": reason})
        for (node, reason), t in zip(owners, texts) if t
    ]
    return edited + paraphrases(ctx, f"round {round_no}: paraphrases", [(c, n_paraphrases) for c in edited])


class Apo(InstructionMethod):
    name = "apo"
    defaults = {"gradients": 2, "errors_per_gradient": 4, "edits_per_gradient": 1, "paraphrases": 1}
    paper = {"gradients": 4, "paraphrases": 2}  # ProTeGi: 4 gradients from groups of 4 errors, 2 paraphrases per edit

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round_no: int) -> list[Candidate]:
        p = ctx.params
        groups, requests = [], []
        for node in beam:
            errors = node.train_errors()
            rng = ctx.rng(round_no, node.key, "error groups")
            for _ in range(p["gradients"] if errors else 0):
                group = [ctx.error(s) for s in rng.sample(errors, min(p["errors_per_gradient"], len(errors)))]
                groups.append((node, group))
                requests.append(("apo_gradient", {
                    "task_description": ctx.task_description, "instruction": ctx.rewritable(node.prompt).instruction,
                    "errors": group, "n": 1,
                }))
        reasons = ctx.ask(f"round {round_no}: gradients", requests, first_tag("reason"), "reason")
        jobs = [(node, group, reason) for (node, group), reason in zip(groups, reasons) if reason]
        return edit_and_paraphrase(ctx, round_no, jobs, p["edits_per_gradient"], p["paraphrases"])

    def projected_round(self, params: dict, beam: int) -> Projected:
        gradients, shown = beam * params["gradients"], {"errors": params["errors_per_gradient"]}
        edits = gradients * params["edits_per_gradient"]
        return Projected((Asks("apo_gradient", gradients, shown), Asks("apo_edit", edits, shown),
                          Asks("paraphrase", edits * params["paraphrases"])), edits * (1 + params["paraphrases"]))


class ApoSum(InstructionMethod):
    name = "apo-sum"
    defaults = {"max_errors": 16, "errors_shown": 4, "edits": 2, "paraphrases": 1}
    paper = {"max_errors": 64, "edits": 4, "paraphrases": 2}  # ProTeGi's budget, one summary over all errors

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round_no: int) -> list[Candidate]:
        p = ctx.params
        reflected = [n for n in beam if n.train_errors()]
        requests = [
            ("apo_sum_reflect", {
                "task_description": ctx.task_description, "instruction": ctx.rewritable(node.prompt).instruction,
                "errors": [ctx.error(s) for s in node.train_errors()[: p["max_errors"]]],
            })
            for node in reflected
        ]
        summaries = ctx.ask(f"round {round_no}: summaries", requests, first_tag("summary"), "summary")
        jobs = [
            (node, [ctx.error(s) for s in node.train_errors()[: p["errors_shown"]]], summary)
            for node, summary in zip(reflected, summaries) if summary
        ]
        return edit_and_paraphrase(ctx, round_no, jobs, p["edits"], p["paraphrases"])

    def projected_round(self, params: dict, beam: int) -> Projected:
        edits = beam * params["edits"]
        return Projected((Asks("apo_sum_reflect", beam, {"errors": params["max_errors"]}),
                          Asks("apo_edit", edits, {"errors": params["errors_shown"]}),
                          Asks("paraphrase", edits * params["paraphrases"])), edits * (1 + params["paraphrases"]))
