"""Reflection methods on explicit errors, expanding each beam prompt as ProTeGi does.

`apo` (ProTeGi): per beam prompt, groups of train errors each get a "textual gradient" (a reason the
prompt failed), each gradient an edit.
`apo-sum`: one reflection summarising a random sample of a beam prompt's errors, then edits.
Both then write paraphrases (ProTeGi's Monte Carlo successors) of every edit and of the beam prompt
itself, and keep at most `max_expansion_factor` of a prompt's distinct children, sampled at random.
With --candidates N, the N are dealt over the beam prompts and each keeps its share in place of
`max_expansion_factor`, with more paraphrases where its edits and their paraphrases would be fewer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, Proposal, Round, first_tag, quotas
from lm_eval_abo.optimizers.instructions import InstructionMethod, paraphrases


def successors(base: int, kept: int, edits: int) -> int:
    """Paraphrases of each of a prompt's `edits` edits and of the prompt itself, so that its children number
    at least the `kept` it keeps (never fewer than `base`)."""
    return max(base, -(-(kept - edits) // (edits + 1)))


def expand(ctx: Context, round_no: int, beam: list[Node], jobs: list[tuple[Node, list[dict], str]], edits_per_job: int) -> list[Candidate]:
    """Each beam prompt's children: `edits_per_job` rewritten instructions per (node, errors shown, reason) job,
    `paraphrases` paraphrases of each edit and of the beam prompt itself, then a seeded sample of
    `max_expansion_factor` of the distinct ones (with --candidates, the prompt's share of them, and enough
    paraphrases for it)."""
    p = ctx.params
    cap = dict(zip([n.key for n in beam], quotas(ctx.candidates, len(beam)) if ctx.candidates
                   else [p.max_expansion_factor] * len(beam)))
    owners, requests = [], []
    for node, errors, reason in jobs:
        for _ in range(edits_per_job):
            owners.append((node, reason))
            requests.append(("apo_edit", {
                "task_description": ctx.task_description, "instruction": ctx.rewritable(node.prompt).instruction,
                "errors": errors, "reason": reason,
            }))
    texts = ctx.ask(f"round {round_no}: edits", requests, first_tag("prompt"), "prompt", sample=True)
    edited = [
        Candidate(replace(ctx.rewritable(node.prompt), instruction=t), "edit", node.key, {"reason": reason})
        for (node, reason), t in zip(owners, texts) if t
    ]
    sources: list[Node | Candidate] = [*edited, *beam]
    beam_prompt_of = {c.key: c.parent for c in edited} | {node.key: node.key for node in beam}
    edits = Counter(beam_prompt_of[c.key] for c in {c.key: c for c in edited}.values())
    each = {k: successors(p.paraphrases, cap[k], edits[k]) if ctx.candidates else p.paraphrases for k in cap}
    written = paraphrases(ctx, f"round {round_no}: paraphrases",
                          [(source, each[beam_prompt_of[source.key]]) for source in sources])
    children: dict[str, dict[str, Candidate]] = {node.key: {} for node in beam}  # beam prompt -> its distinct children
    for child in edited + written:
        owner = beam_prompt_of[child.parent]
        if child.key != owner:
            children[owner].setdefault(child.key, child)
    kept = []
    for owner, distinct in children.items():
        found = list(distinct.values())
        if len(found) > cap[owner]:
            chosen = set(ctx.rng(round_no, owner, "expansion").sample(range(len(found)), cap[owner]))
            found = [c for i, c in enumerate(found) if i in chosen]
        kept += found
    return kept


def projected_children(params, beam: int, reflect: Asks, edits: int, shown: dict, candidates: int | None) -> Projected:
    """A round's calls and candidates: per beam prompt the `reflect` calls, `edits` edits, paraphrases of
    the edits and of the prompt, at most `max_expansion_factor` children kept (with `candidates`, its share,
    and the most paraphrases any number of edits up to `edits` calls for)."""
    caps = quotas(candidates, beam) if candidates else [params.max_expansion_factor] * beam
    written = [max((e + 1) * successors(params.paraphrases, c, e) for e in range(edits + 1)) if candidates
               else (edits + 1) * params.paraphrases for c in caps]
    return Projected((replace(reflect, calls=beam * reflect.calls), Asks("apo_edit", beam * edits, shown),
                      Asks("paraphrase", sum(written))), sum(min(c, edits + w) for c, w in zip(caps, written)))


@dataclass(frozen=True)
class ApoParams:
    gradients: int = flag("textual gradients per beam prompt, each from its own group of train errors", default=2)
    errors_per_gradient: int = flag("train errors shown to each gradient", default=4)
    edits_per_gradient: int = flag("rewritten instructions per gradient", default=1)
    paraphrases: int = flag("paraphrases (Monte Carlo successors) of every edit and of the beam prompt", default=1)
    max_expansion_factor: int = flag("distinct children of a beam prompt kept, sampled at random", default=4)


@dataclass(frozen=True)
class ApoSumParams:
    max_errors: int = flag("train errors the one reflection summarises", default=16)
    errors_shown: int = flag("of those, errors the edits see", default=4)
    edits: int = flag("rewritten instructions per beam prompt", default=2)
    paraphrases: int = flag("paraphrases of every edit and of the beam prompt", default=1)
    max_expansion_factor: int = flag("distinct children of a beam prompt kept, sampled at random", default=4)


class Apo(InstructionMethod):
    name = "apo"
    params = ApoParams()
    # ProTeGi: 4 gradients from groups of 4 errors, 1 edit per gradient, 2 Monte Carlo samples per prompt, 8 children kept
    paper = ApoParams(gradients=4, paraphrases=2, max_expansion_factor=8)

    def propose(self, ctx: Context, round: Round) -> Proposal:
        p, round_no = ctx.params, round.number
        groups, requests = [], []
        for node in round.beam:
            errors = round.errors(node)
            rng = ctx.rng(round_no, node.key, "error groups")
            for _ in range(p.gradients if errors else 0):
                group = [ctx.error(s) for s in rng.sample(errors, min(p.errors_per_gradient, len(errors)))]
                groups.append((node, group))
                requests.append(("apo_gradient", {
                    "task_description": ctx.task_description, "instruction": ctx.rewritable(node.prompt).instruction,
                    "errors": group, "n": 1,
                }))
        reasons = ctx.ask(f"round {round_no}: gradients", requests, first_tag("reason"), "reason")
        jobs = [(node, group, reason) for (node, group), reason in zip(groups, reasons) if reason]
        return Proposal(expand(ctx, round_no, round.beam, jobs, p.edits_per_gradient))

    def projected_round(self, params: ApoParams, beam: int, candidates: int | None = None) -> Projected:
        shown = {"errors": params.errors_per_gradient}
        return projected_children(params, beam, Asks("apo_gradient", params.gradients, shown),
                                  params.gradients * params.edits_per_gradient, shown, candidates)


class ApoSum(InstructionMethod):
    name = "apo-sum"
    params = ApoSumParams()
    paper = ApoSumParams(max_errors=64, edits=4, paraphrases=2, max_expansion_factor=8)  # ProTeGi's budget, one summary

    def propose(self, ctx: Context, round: Round) -> Proposal:
        p, round_no = ctx.params, round.number
        sampled = {}  # a seeded random sample of each beam prompt's errors
        for node in round.beam:
            errors = round.errors(node)
            sampled[node.key] = ctx.rng(round_no, node.key, "errors").sample(errors, min(p.max_errors, len(errors)))
        reflected = [node for node in round.beam if sampled[node.key]]
        requests = [
            ("apo_sum_reflect", {
                "task_description": ctx.task_description, "instruction": ctx.rewritable(node.prompt).instruction,
                "errors": [ctx.error(s) for s in sampled[node.key]],
            })
            for node in reflected
        ]
        summaries = ctx.ask(f"round {round_no}: summaries", requests, first_tag("summary"), "summary")
        jobs = [
            (node, [ctx.error(s) for s in sampled[node.key][: p.errors_shown]], summary)  # a random sample too
            for node, summary in zip(reflected, summaries) if summary
        ]
        return Proposal(expand(ctx, round_no, round.beam, jobs, p.edits))

    def projected_round(self, params: ApoSumParams, beam: int, candidates: int | None = None) -> Projected:
        return projected_children(params, beam, Asks("apo_sum_reflect", 1, {"errors": params.max_errors}),
                                  params.edits, {"errors": params.errors_shown}, candidates)
