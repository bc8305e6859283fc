"""ABO, Automatic Behavior Optimization, as this project defines it (a reconstruction of the idea in
Ma et al. 2024, whose meta-prompts are not published).

Round 0: the optimizer writes a numbered procedure of small checkable steps ending in the task's answer
format, then demonstrations that execute it on training examples. A demonstration is kept only if it
works through every step in order ("Step 1:" ... "Step N:", none skipped or merged, each step's text
non-empty and doing that step) and its answer, passed through the task's own lm-eval filter and metric,
is right; it is written without the gold answer first, and with it only for the examples that failed
(`hint`), and the two kinds are counted apart (`demonstrations.py`). A procedure none of whose
demonstrations verifies is dropped: without them it would be the ablation, not ABO.
Later rounds: the target runs each behaviour prompt on a training batch; for each error the optimizer
reads the whole answer and names the first failing step and whether it was not followed or followed but
wrong; the most-failed step is split or clarified (not followed) or rewritten (wrong), and the
demonstrations are rebuilt and re-verified, starting from the examples that failed at that step. A step
not followed also gets this project's other repair: the same steps with demonstrations that exercise it.
Each beam prompt gets `revisions` repairs (step revisions, demonstration repairs, then whole-procedure
revisions if the located steps run out); without localisation, as many whole-procedure revisions, each
shown its own share of the errors. The beam decides between them.

Every part can be switched through --method-args: demos=0 (the paper's ablation, also the method
`abo-ablation`), verify=steps|answer|none, hint=fallback|always|never, localise=0, demo_repairs=0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers import demonstrations as demos_of
from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Dropped, Node, Projected, Proposal, Round, quotas
from lm_eval_abo.optimizers.procedure import KINDS, capped, parse_location, parse_steps, splice, step_failure_table

INSTRUCTION = 'Solve the problem by following these steps exactly, in order. Write "Step N:" before the work of each step.'
EXTRA_STEPS = 4  # a revision may grow the procedure this far beyond max_steps


@dataclass(frozen=True)
class AboParams:
    procedures: int = flag("behaviour prompts written in round 0 (more fill the beam)", default=1)
    demos: int = flag("verified demonstrations per behaviour prompt (0: none, the ablation)", default=3)
    demo_attempts: int = flag("training examples tried to get them (each may be tried again with the hint)", default=4)
    verify: str = flag("every step in order, each step's text doing that step, and a right answer (steps); the answer "
                       "only; none", default="steps", choices=("steps", "answer", "none"))
    hint: str = flag("the gold answer: only to retry failed examples (fallback); always; never", default="fallback",
                     choices=("fallback", "always", "never"))
    localise: int = flag("name the first failing step of each error (0: revise the whole procedure from errors alone)",
                         default=1)
    max_errors: int = flag("errors diagnosed per beam prompt per round (each is one optimizer call)", default=3)
    revisions: int = flag("repairs per beam prompt per round: revised procedures and demonstration repairs (localise=0: "
                          "as many whole-procedure revisions)", default=2)
    demo_repairs: int = flag("a step not followed also gets new demonstrations exercising it (0: not)", default=1)
    min_steps: int = flag("fewest steps a procedure is asked for", default=3)
    max_steps: int = flag("most steps a procedure keeps", default=7)


@dataclass(frozen=True)
class Repair:
    """One repair of a behaviour prompt: a revision of a step (`step`) or of the whole procedure (None), or new
    demonstrations for a step not followed (`demos_only`); the errors it is shown, each with its location."""

    step: int | None
    kind: str | None
    errors: list
    demos_only: bool = False


def shares(items: list, parts: int) -> list[list]:
    """`items` dealt round-robin into `parts` groups; with fewer items than groups, each group all of them,
    starting at a different one (so no two requests are the same)."""
    if len(items) >= parts:
        return [items[k::parts] for k in range(parts)]
    return [items[k % len(items):] + items[: k % len(items)] for k in range(parts)] if items else [[]] * parts


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
        return Proposal(self._procedures(ctx, "round 0", dropped, ctx.candidates or ctx.params.procedures), tuple(dropped))

    def _procedures(self, ctx: Context, purpose: str, dropped: list[Dropped], count: int) -> list[Candidate]:
        """Step 0: `count` new procedures, each with its verified demonstrations."""
        p, docs = ctx.params, ctx.task.docs("train")
        requests = []
        for i in range(max(count, 1)):
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
        """Per beam prompt: new procedures for one without a procedure (the baseline), `procedures` of them;
        repairs for one with errors, `revisions` of them; with --candidates, the N dealt over those prompts."""
        p, candidates, dropped = ctx.params, [], []
        active = [node for node in round.beam if not node.prompt.procedure or round.errors(node)]
        counts = quotas(ctx.candidates, len(active)) if ctx.candidates else [
            p.revisions if node.prompt.procedure else max(p.procedures, 1) for node in active]
        for node, count in zip(active, counts):
            if not count:
                continue
            if not node.prompt.procedure:  # a prompt without a procedure (the baseline): write procedures for it
                written = self._procedures(ctx, f"round {round.number}", dropped, count)
                candidates += [replace(c, parent=node.key) for c in written]
            else:
                candidates += self._repairs(ctx, node, round.errors(node), round.number, dropped, count)
        return Proposal(candidates, tuple(dropped))

    def _repairs(self, ctx: Context, node: Node, errors, round_no: int, dropped: list[Dropped], count: int) -> list[Candidate]:
        """A behaviour prompt's errors located step by step, and the `count` repairs they call for."""
        p, steps, tag = ctx.params, list(node.prompt.procedure), f"round {round_no}: {node.key[:8]}"
        errors = ctx.rng(round_no, node.key, "errors").sample(errors, min(p.max_errors, len(errors)))
        located = self._locate(ctx, node.prompt, errors, f"{tag} locate") if p.localise else [None] * len(errors)
        diagnosis = {
            "parent": node.key[:12],
            "step_failures": step_failure_table([x for x in located if x], len(steps)),
            "errors": [{"id": e.id, "answer": e.answer, "target": e.target, **(loc or {"step": None, "kind": None})}
                       for e, loc in zip(errors, located)],
        }
        repairs = self._plan(list(zip(errors, located)), count, bool(p.demo_repairs and p.demos and p.localise))
        revising = [r for r in repairs if not r.demos_only]
        requests = []
        for r in revising:
            shown = [{**ctx.error(e), "output": node.prompt.answer_prefix + e.output, "why": loc["why"] if loc else ""}
                     for e, loc in r.errors]
            if r.step is None:
                requests.append(("abo_revise", {"task_description": ctx.task_description, "procedure": steps,
                                                "errors": shown, "answer_format": self._answer_format(ctx)}))
            else:
                requests.append(("abo_revise_step", {"task_description": ctx.task_description, "procedure": steps,
                                                     "step": r.step, "kind": r.kind, "errors": shown}))
        replies = ctx.ask(f"{tag} revise", requests, lambda t: parse_steps(t, "procedure") or parse_steps(t, "steps", 1), "steps")
        revised = dict(zip(map(id, revising), replies))
        candidates = []
        for i, r in enumerate(repairs):
            examples = list(dict.fromkeys(e.index for e, _ in r.errors))  # an example several targets missed: once
            if r.demos_only:  # the same steps, shown doing this one
                demos, counts = self.demonstrations(ctx, steps, f"{tag} demos for step {r.step}", examples)
                notes = {"repaired_step": r.step, "kind": r.kind, "demos_verified": counts, "diagnosis": diagnosis}
                candidates += self._kept(ctx, Candidate(self._prompt(ctx, steps, demos, node.prompt), "demonstration",
                                                        node.key, notes), dropped)
                continue
            new = revised[id(r)]
            if not new or (r.step is None and len(new) < 2):
                continue
            new_steps = new if r.step is None else splice(steps, r.step, new)
            if not new_steps or new_steps == steps:
                continue
            new_steps = capped(new_steps, p.max_steps + EXTRA_STEPS)
            demos, counts = self.demonstrations(ctx, new_steps, f"{tag}.{i} demos", examples)
            notes = {"revised_step": r.step, "kind": r.kind, "demos_verified": counts, "diagnosis": diagnosis}
            candidates += self._kept(ctx, Candidate(self._prompt(ctx, new_steps, demos, node.prompt), "revision", node.key,
                                                    notes), dropped)
        return candidates

    def projected(self, params: AboParams, beam: int, initial: bool, n_dev: int, candidates: int | None = None) -> Projected:
        """Most calls: a demonstration attempt may be asked twice (without, then with the hint)."""
        demo_calls = params.demo_attempts * (1 + (params.hint == "fallback")) if params.demos else 0
        steps = {"procedure": params.max_steps}
        if initial:
            written = candidates or params.procedures
            asks = [Asks("abo_procedure", written, {"examples": 3})]
        else:  # each of a beam prompt's repairs may be a revision (asked) or a demonstration repair (not asked)
            written, errors = candidates or beam * params.revisions, params.max_errors
            asks = [Asks("abo_locate", beam * errors * bool(params.localise), steps),
                    Asks("abo_revise_step" if params.localise else "abo_revise", written, {**steps, "errors": errors})]
        return Projected((*asks, Asks("abo_demonstration", written * demo_calls, steps)), written,
                         reads_errors=not initial)

    def written(self, params: AboParams) -> tuple[Asks, ...]:
        return (Asks("abo_procedure", 1), Asks("abo_demonstration", params.demos, {"examples": 1}))

    # --- parts ---

    @staticmethod
    def _answer_format(ctx: Context) -> str:
        return demos_of.answer_format(ctx)

    def _prompt(self, ctx: Context, steps: list[str], demos: list[Demonstration], base: Prompt | None = None) -> Prompt:
        base = base or ctx.task.default_prompt
        return Prompt(
            instruction=INSTRUCTION, placement=base.placement, procedure=tuple(steps),
            answer_format=self._answer_format(ctx), demonstrations=tuple(demos), answer_prefix="Step 1:",
        )

    @staticmethod
    def demonstrations(ctx: Context, steps: list[str], purpose: str, preferred: list[int]) -> tuple[list[Demonstration], dict]:
        """`demonstrations.demonstrations`: up to `demos` checked demonstrations of the procedure, and their counts."""
        return demos_of.demonstrations(ctx, steps, purpose, preferred)

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
        frequent failure kind; then the whole procedure (step None) for every revision left."""
        found = [loc for loc in located if loc]
        counts = Counter(loc["step"] for loc in found)
        plans: list[tuple[int | None, str | None]] = []
        for step in sorted(counts, key=lambda s: (-counts[s], s))[:revisions]:
            kinds = Counter(loc["kind"] for loc in found if loc["step"] == step)
            plans.append((step, max(KINDS, key=lambda k: kinds[k])))
        return plans + [(None, None)] * (revisions - len(plans))

    @classmethod
    def _plan(cls, located: list[tuple], count: int, demo_repairs: bool) -> list[Repair]:
        """`count` repairs of a beam prompt from its (error, location) pairs: for each planned step, its
        revision, then (a step not followed, `demo_repairs`) its demonstration repair; whole-procedure
        revisions for what is left, each shown its own share of the errors."""
        repairs = []
        for step, kind in cls._revision_plans([loc for _, loc in located], count):
            if step is not None:
                failing = [(e, loc) for e, loc in located if loc and loc["step"] == step]
                repairs.append(Repair(step, kind, failing))
                if kind == "not_followed" and demo_repairs:
                    repairs.append(Repair(step, kind, failing, demos_only=True))
        repairs = repairs[:count]
        whole = count - len(repairs)
        return repairs + [Repair(None, None, group) for group in shares(located, whole)] if whole else repairs
