"""ABO, Automatic Behavior Optimization, as this project defines it (a reconstruction of the idea in
Ma et al. 2024, whose meta-prompts are not published).

Round 0: the optimizer writes a numbered procedure of small checkable steps ending in the task's answer
format, then demonstrations that execute it on training examples. A demonstration is kept only if it
works through every step in order ("Step 1:" ... "Step N:", none skipped or merged) and its answer, passed
through the task's own lm-eval filter and metric, is right; it is written without the gold answer first,
and with it only for the examples that failed (`hint`). A procedure none of whose demonstrations verifies
is dropped: without them it would be the ablation, not ABO.
Later rounds: the target runs each behaviour prompt on a training batch; for each error the optimizer
reads the whole answer and names the first failing step and whether it was not followed or followed but
wrong; the most-failed step is split or clarified (not followed) or rewritten (wrong), and the
demonstrations are rebuilt and re-verified, starting from the examples that failed at that step. A step
not followed also gets the paper's other repair: the same steps with demonstrations that exercise it.
The beam decides between them.

Every part can be switched through --method-args: demos=0 (the paper's ablation, also the method
`abo-ablation`), verify=steps|answer|none, hint=fallback|always|never, localise=0, demo_repairs=0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Dropped, Node, Projected, Proposal, Round
from lm_eval_abo.optimizers.procedure import (
    KINDS,
    capped,
    follows,
    parse_location,
    parse_solution,
    parse_steps,
    splice,
    step_failure_table,
)

INSTRUCTION = 'Solve the problem by following these steps exactly, in order. Write "Step N:" before the work of each step.'
EXTRA_STEPS = 4  # a revision may grow the procedure this far beyond max_steps


@dataclass(frozen=True)
class AboParams:
    procedures: int = flag("behaviour prompts written in round 0 (more fill the beam)", default=1)
    demos: int = flag("verified demonstrations per behaviour prompt (0: none, the ablation)", default=3)
    demo_attempts: int = flag("training examples tried to get them (each may be tried again with the hint)", default=4)
    verify: str = flag("every step in order and a right answer (steps); the answer only; none", default="steps",
                       choices=("steps", "answer", "none"))
    hint: str = flag("the gold answer: only to retry failed examples (fallback); always; never", default="fallback",
                     choices=("fallback", "always", "never"))
    localise: int = flag("name the first failing step of each error (0: revise from errors alone)", default=1)
    max_errors: int = flag("errors diagnosed per beam prompt per round (each is one optimizer call)", default=3)
    revisions: int = flag("revised procedures per beam prompt per round", default=2)
    demo_repairs: int = flag("a step not followed also gets new demonstrations exercising it (0: not)", default=1)
    min_steps: int = flag("fewest steps a procedure is asked for", default=3)
    max_steps: int = flag("most steps a procedure keeps", default=7)


class Abo:
    patience = 1  # stop when a round brings no dev improvement (the paper stops after 2 steps)
    needs_generation = True  # the procedure is followed in generated text

    def __init__(self, name: str = "abo", demos: int = 3):
        self.name = name
        self.params = AboParams(demos=demos)
        # our choice: no published numbers
        self.paper = replace(self.params, procedures=2, demo_attempts=12, max_errors=8, revisions=3)

    # --- round 0 ---

    def initial(self, ctx: Context, beam: int) -> Proposal:
        dropped: list[Dropped] = []
        return Proposal(self._procedures(ctx, "round 0", dropped), tuple(dropped))

    def _procedures(self, ctx: Context, purpose: str, dropped: list[Dropped]) -> list[Candidate]:
        """Step 0: new procedures, each with its verified demonstrations."""
        p, docs = ctx.params, ctx.task.docs("train")
        requests = []
        for i in range(max(p.procedures, 1)):
            picked = ctx.rng(purpose, "procedure examples", i).sample(ctx.train_pool, min(3, len(ctx.train_pool)))
            requests.append(("abo_procedure", {
                "task_description": ctx.task_description, "answer_format": self._answer_format(ctx),
                "examples": [ctx.example(docs[j]) for j in picked], "min_steps": p.min_steps, "max_steps": p.max_steps,
            }))
        procedures = ctx.ask(f"{purpose}: procedures", requests, parse_steps, "procedure")
        candidates = []
        for i, steps in enumerate(procedures):
            if not steps:  # nothing to score, but the round's record says why no procedure came of the ask
                dropped.append(Dropped("-", "procedure", "the optimizer's reply held no <procedure> of 2 or more "
                                                         "numbered steps"))
                continue
            steps = capped(steps, p.max_steps)
            demos, counts = self.demonstrations(ctx, steps, f"{purpose}: demos {i}", preferred=[])
            candidates += self._kept(ctx, Candidate(self._prompt(ctx, steps, demos), "procedure", None,
                                                    {"demos_verified": counts}), dropped)
        return candidates

    @staticmethod
    def _kept(ctx: Context, candidate: Candidate, dropped: list[Dropped]) -> list[Candidate]:
        """The candidate, unless it should have demonstrations and none verified (then it is dropped, and
        the round's record says so)."""
        if ctx.params.demos and not candidate.prompt.demonstrations:
            dropped.append(Dropped.of(candidate, f"no demonstration verified ({candidate.notes['demos_verified']})"))
            return []
        return [candidate]

    # --- later rounds ---

    @staticmethod
    def wants_errors(node: Node) -> bool:
        """Only a behaviour prompt's errors are diagnosed; a prompt without a procedure (the baseline)
        gets new procedures written from the task alone, so scoring its train batch would be wasted."""
        return bool(node.prompt.procedure)

    def propose(self, ctx: Context, round: Round) -> Proposal:
        candidates, dropped = [], []
        for node in round.beam:
            if not node.prompt.procedure:  # a prompt without a procedure (the baseline): write procedures for it
                written = self._procedures(ctx, f"round {round.number}", dropped)
                candidates += [replace(c, parent=node.key) for c in written]
            elif round.errors(node):
                candidates += self._repairs(ctx, node, round.errors(node), round.number, dropped)
        return Proposal(candidates, tuple(dropped))

    def _repairs(self, ctx: Context, node: Node, errors, round_no: int, dropped: list[Dropped]) -> list[Candidate]:
        """A behaviour prompt's errors located step by step, and the revisions they call for."""
        p, steps, tag = ctx.params, list(node.prompt.procedure), f"round {round_no}: {node.key[:8]}"
        errors = ctx.rng(round_no, node.key, "errors").sample(errors, min(p.max_errors, len(errors)))
        located = self._locate(ctx, node.prompt, errors, f"{tag} locate") if p.localise else [None] * len(errors)
        diagnosis = {
            "parent": node.key[:12],
            "step_failures": step_failure_table([x for x in located if x], len(steps)),
            "errors": [{"id": e.id, "answer": e.answer, "target": e.target, **(loc or {"step": None, "kind": None})}
                       for e, loc in zip(errors, located)],
        }
        plans = self._revision_plans(located, p.revisions)

        def failing(step):
            return [(e, loc) for e, loc in zip(errors, located) if step is None or (loc and loc["step"] == step)]

        requests = []
        for step, kind in plans:
            shown = [{**ctx.error(e), "output": node.prompt.answer_prefix + e.output, "why": loc["why"] if loc else ""}
                     for e, loc in failing(step)]
            if step is None:
                requests.append(("abo_revise", {"task_description": ctx.task_description, "procedure": steps,
                                                "errors": shown, "answer_format": self._answer_format(ctx)}))
            else:
                requests.append(("abo_revise_step", {"task_description": ctx.task_description, "procedure": steps,
                                                     "step": step, "kind": kind, "errors": shown}))
        replies = ctx.ask(f"{tag} revise", requests, lambda t: parse_steps(t, "procedure") or parse_steps(t, "steps", 1), "steps")
        candidates = []
        for i, ((step, kind), new) in enumerate(zip(plans, replies)):
            examples = [e.index for e, _ in failing(step)]
            if kind == "not_followed" and p.demo_repairs and p.demos:  # the same steps, shown doing this one
                demos, counts = self.demonstrations(ctx, steps, f"{tag} demos for step {step}", examples)
                notes = {"repaired_step": step, "kind": kind, "demos_verified": counts, "diagnosis": diagnosis}
                candidates += self._kept(ctx, Candidate(self._prompt(ctx, steps, demos, node.prompt), "demonstration",
                                                        node.key, notes), dropped)
            if not new or (step is None and len(new) < 2):
                continue
            new_steps = new if step is None else splice(steps, step, new)
            if not new_steps or new_steps == steps:
                continue
            new_steps = capped(new_steps, p.max_steps + EXTRA_STEPS)
            demos, counts = self.demonstrations(ctx, new_steps, f"{tag}.{i} demos", examples)
            notes = {"revised_step": step, "kind": kind, "demos_verified": counts, "diagnosis": diagnosis}
            candidates += self._kept(ctx, Candidate(self._prompt(ctx, new_steps, demos, node.prompt), "revision", node.key,
                                                    notes), dropped)
        return candidates

    def projected(self, params: AboParams, beam: int, initial: bool, n_dev: int) -> Projected:
        """Most calls: a demonstration attempt may be asked twice (without, then with the hint)."""
        demo_calls = params.demo_attempts * (1 + (params.hint == "fallback")) if params.demos else 0
        steps = {"procedure": params.max_steps}
        if initial:
            written = params.procedures
            asks = [Asks("abo_procedure", written, {"examples": 3})]
        else:
            repairs = params.revisions * bool(params.demo_repairs and params.demos)
            written, errors = beam * (params.revisions + repairs), params.max_errors
            asks = [Asks("abo_locate", beam * errors * bool(params.localise), steps),
                    Asks("abo_revise_step" if params.localise else "abo_revise", beam * params.revisions,
                         {**steps, "errors": errors})]
        return Projected((*asks, Asks("abo_demonstration", written * demo_calls, steps)), written,
                         reads_errors=not initial)

    def written(self, params: AboParams) -> tuple[Asks, ...]:
        return (Asks("abo_procedure", 1), Asks("abo_demonstration", params.demos, {"examples": 1}))

    # --- parts ---

    @staticmethod
    def _answer_format(ctx: Context) -> str:
        return ctx.task.answer_format or "End with the final answer."

    def _prompt(self, ctx: Context, steps: list[str], demos: list[Demonstration], base: Prompt | None = None) -> Prompt:
        base = base or ctx.task.default_prompt
        return Prompt(
            instruction=INSTRUCTION, placement=base.placement, procedure=tuple(steps),
            answer_format=self._answer_format(ctx), demonstrations=tuple(demos), answer_prefix="Step 1:",
        )

    def demonstrations(self, ctx: Context, steps: list[str], purpose: str, preferred: list[int]) -> tuple[list[Demonstration], dict]:
        """Up to `demos` demonstrations of the procedure on training examples (the `preferred` ones first,
        e.g. those that failed at a revised step), each checked (`verify`); with `hint=fallback`, the
        examples whose solution failed are written again with the gold answer shown. Without steps, plain
        chain-of-thought demonstrations (the paper-table's demonstrations-only control). Returns them and
        the counts of what was tried, kept, and which check failed."""
        p = ctx.params
        if not p.demos:
            return [], {}
        docs = ctx.task.docs("train")
        others = [i for i in ctx.rng(purpose, "order").sample(ctx.train_pool, len(ctx.train_pool)) if i not in preferred]
        tried = (list(dict.fromkeys(preferred)) + others)[: p.demo_attempts]
        counts, kept = Counter(tried=len(tried)), []
        passes = {"fallback": (False, True), "always": (True,), "never": (False,)}[p.hint]
        for hint in passes:
            requests = [("abo_demonstration" if steps else "cot_demonstration", {
                **({"procedure": steps} if steps else {}), "question": ctx.task.question(docs[i]),
                "answer_format": self._answer_format(ctx), "target_hint": ctx.task.gold(docs[i]) if hint else "",
            }) for i in tried]
            solutions = ctx.ask(purpose + (" (answer shown)" if hint else ""), requests, parse_solution, "solution")
            failed = []
            for i, solution in zip(tried, solutions):
                verdict, text = self._verified(ctx, docs[i], solution, len(steps))
                counts[verdict] += 1
                if verdict == "kept":
                    kept.append(Demonstration(doc=docs[i], output=text))
                    counts["kept_with_hint"] += hint
                else:
                    failed.append(i)
            tried = failed
            if len(kept) >= p.demos or not tried:
                break
        return kept[: p.demos], {k: v for k, v in counts.items() if v}

    def _verified(self, ctx: Context, doc: dict, solution: str | None, n_steps: int) -> tuple[str, str]:
        """("kept", the text to keep) or the check it failed: "unparsed", "steps" or "answer"."""
        if solution is None:
            return "unparsed", ""
        mode = ctx.params.verify
        if mode == "none":
            return "kept", solution
        start = 0
        if mode == "steps" and n_steps:
            start = follows(solution, n_steps)
            if start is None:
                return "steps", solution
        # keep what verifies, up to the first line of the last step's work on which the answer is right:
        # what the optimizer wrote after it (often the answer format echoed back) is not worth imitating
        lines = solution[start:].splitlines()
        cuts = [solution[:start] + "\n".join(lines[:k]).rstrip() for k in range(1, len(lines) + 1)]
        checks = ctx.task.check(cuts, [doc] * len(cuts))
        text = next((cut for cut, (_, score) in zip(cuts, checks) if ctx.task.correct(score)), None)
        return ("kept", text) if text is not None else ("answer", solution)

    @staticmethod
    def _locate(ctx: Context, prompt: Prompt, errors, purpose: str) -> list[dict | None]:
        """The first failing step of each error, read from the target's whole answer (its prefix included)."""
        steps = list(prompt.procedure)
        requests = [("abo_locate", {"procedure": steps, **ctx.error(e), "output": prompt.answer_prefix + e.output})
                    for e in errors]
        return ctx.ask(purpose, requests, lambda t: parse_location(t, len(steps)), "step")

    @staticmethod
    def _revision_plans(located: list[dict | None], revisions: int) -> list[tuple[int | None, str | None]]:
        """What each revision targets: the most-failed steps first (earliest on ties), each with its most
        frequent failure kind; then, if revisions remain, the whole procedure (step None)."""
        found = [loc for loc in located if loc]
        counts = Counter(loc["step"] for loc in found)
        plans: list[tuple[int | None, str | None]] = []
        for step in sorted(counts, key=lambda s: (-counts[s], s))[:revisions]:
            kinds = Counter(loc["kind"] for loc in found if loc["step"] == step)
            plans.append((step, max(KINDS, key=lambda k: kinds[k])))
        if len(plans) < revisions:
            plans.append((None, None))
        return plans
