"""ABO, Automatic Behavior Optimization, as this project defines it (a reconstruction of the idea in
Ma et al. 2024, whose meta-prompts are not published).

Round 0: the optimizer writes a numbered procedure of small checkable steps ending in the task's answer
format, then demonstrations that execute it step by step on training examples; a demonstration is kept
only if its final answer, passed through the task's own lm-eval filter and metric, is right.
Later rounds: the target runs each behaviour prompt on a training batch; for each error the optimizer
names the first failing step and whether it was not followed or followed but wrong; the most-failed
step is split or clarified (not followed) or rewritten (wrong), and the demonstrations are rebuilt and
re-verified, starting from the examples that failed at that step.

Every part can be switched off through --method-args: demos=0 (the paper's ablation, also the method
`abo-ablation`), verify=0, localise=0, hint=0.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, first_tag
from lm_eval_abo.prompt import Demonstration, Prompt

INSTRUCTION = 'Solve the problem by following these steps exactly, in order. Write "Step N:" before the work of each step.'
KINDS = ("not_followed", "wrong")
MAX_STEP_CHARS = 400


def parse_steps(text: str, tag: str = "procedure", min_steps: int = 2, max_steps: int = 12) -> list[str] | None:
    """Numbered steps ("1. ...", "Step 2: ...") from a <tag> block; None if fewer than `min_steps`."""
    block = first_tag(tag)(text)
    if block is None:
        return None
    steps, after_blank = [], False
    for line in block.splitlines():
        m = re.match(r"^\s*(?:[-*]\s*)?(?:step\s*)?(\d{1,2})\s*[.):]\s*(.+)$", line, flags=re.I)
        if m:
            steps.append(m.group(2).strip()[:MAX_STEP_CHARS])
        elif steps and line.strip() and not after_blank and not line.strip().startswith(("-", "*")):
            steps[-1] = f"{steps[-1]} {line.strip()}"[:MAX_STEP_CHARS]  # a step that wraps onto the next line
        after_blank = not line.strip() or (after_blank and not m)  # text after a blank line is not a step
    return steps[:max_steps] if len(steps) >= min_steps else None


def splice(steps: list[str], step: int, replacement: list[str]) -> list[str] | None:
    """The procedure with step `step` replaced; None when nothing changes (small optimizers often
    hand back the whole procedure instead of the new step)."""
    if replacement == steps or replacement == [steps[step - 1]]:
        return None
    return steps[: step - 1] + replacement + steps[step:]


def parse_solution(text: str) -> str | None:
    """A demonstration from a <solution> block; small optimizers often drop the tags but still write
    the steps, so text from the first "Step 1" on is accepted too (verification judges it anyway)."""
    tagged = first_tag("solution")(text)
    if tagged:
        return tagged
    start = re.search(r"step\s*1\s*[:.)]", text, flags=re.I)
    return text[start.start() :].replace("```", "").strip() if start else None


def parse_location(text: str, n_steps: int) -> dict | None:
    """{"step", "kind", "why"} from a localisation reply, or None if malformed."""
    step, kind = first_tag("step")(text), first_tag("kind")(text)
    number = re.search(r"\d+", step or "")
    kind = (kind or "").strip().lower().replace(" ", "_").replace("-", "_")
    if not number or kind not in KINDS or not 1 <= int(number.group()) <= n_steps:
        return None
    return {"step": int(number.group()), "kind": kind, "why": (first_tag("why")(text) or "")[:300]}


def step_failure_table(located: list[dict], n_steps: int) -> list[dict]:
    counts = Counter((loc["step"], loc["kind"]) for loc in located)
    return [
        {"step": i, "not_followed": counts[(i, "not_followed")], "wrong": counts[(i, "wrong")]}
        for i in range(1, n_steps + 1)
    ]


class Abo:
    patience = 1  # stop when a round brings no dev improvement (the paper stops after 2 steps)
    uses_errors = True
    needs_generation = True  # the procedure is followed in generated text

    def __init__(self, name: str = "abo", demos: int = 3):
        self.name = name
        self.defaults = {
            "procedures": 1,  # behaviour prompts written in round 0 (more fill the beam)
            "demos": demos,  # verified demonstrations per behaviour prompt (0: none, the ablation)
            "demo_attempts": 4,  # training examples tried to get them
            "verify": 1,  # keep only demonstrations whose answer passes the task's filter and metric
            "hint": 1,  # tell the optimizer the gold answer when it writes a demonstration
            "localise": 1,  # name the first failing step of each error (0: revise from errors alone)
            "max_errors": 3,  # errors diagnosed per beam prompt per round
            "revisions": 2,  # revised procedures per beam prompt per round
            "min_steps": 3,
            "max_steps": 7,
        }
        self.paper = {"procedures": 2, "demo_attempts": 12, "max_errors": 8, "revisions": 3}  # our choice: no published numbers

    # --- round 0 ---

    def initial(self, ctx: Context, beam: int) -> list[Candidate]:
        return self._procedures(ctx, "round 0")

    def _procedures(self, ctx: Context, purpose: str) -> list[Candidate]:
        """Step 0: new procedures, each with its verified demonstrations."""
        p, docs = ctx.params, ctx.bridge.docs("train")
        requests = []
        for i in range(max(p["procedures"], 1)):
            picked = ctx.rng(purpose, "procedure examples", i).sample(ctx.train_pool, min(3, len(ctx.train_pool)))
            requests.append(("abo_procedure", {
                "task_description": ctx.task_description, "answer_format": self._answer_format(ctx),
                "examples": [ctx.example(docs[j]) for j in picked], "min_steps": p["min_steps"], "max_steps": p["max_steps"],
            }))
        procedures = ctx.ask(f"{purpose}: procedures", requests, lambda t: parse_steps(t, max_steps=p["max_steps"] + 2), "procedure")
        candidates = []
        for i, steps in enumerate(procedures):
            if steps:
                demos, tried = self._demonstrations(ctx, steps, f"{purpose}: demos {i}", preferred=[])
                candidates.append(Candidate(self._prompt(ctx, steps, demos), "procedure", None, {"demos_verified": f"{len(demos)}/{tried}"}))
        return candidates

    # --- later rounds ---

    @staticmethod
    def wants_errors(node: Node) -> bool:
        """Only a behaviour prompt's errors are diagnosed; a prompt without a procedure (the baseline)
        gets new procedures written from the task alone, so scoring its train batch would be wasted."""
        return bool(node.prompt.procedure)

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round_no: int) -> list[Candidate]:
        p = ctx.params
        candidates = []
        for node in beam:
            steps = list(node.prompt.procedure)
            errors = node.train_errors()
            if not steps:  # a prompt without a procedure (the baseline): write procedures for it
                candidates += [replace(c, parent=node.key) for c in self._procedures(ctx, f"round {round_no}")]
                continue
            if not errors:
                continue
            errors = ctx.rng(round_no, node.key, "errors").sample(errors, min(p["max_errors"], len(errors)))
            located = self._locate(ctx, steps, errors, f"round {round_no}: locate {node.key[:8]}") if p["localise"] else [None] * len(errors)
            diagnosis = {
                "parent": node.key[:12],
                "step_failures": step_failure_table([x for x in located if x], len(steps)),
                "errors": [
                    {"id": e.id, "answer": e.answer, "target": e.target, **(loc or {"step": None, "kind": None})}
                    for e, loc in zip(errors, located)
                ],
            }
            plans = self._revision_plans(located, p["revisions"])
            requests = []
            for step, kind in plans:
                shown = [
                    {**ctx.error(e), "why": loc["why"] if loc else ""}
                    for e, loc in zip(errors, located) if step is None or (loc and loc["step"] == step)
                ]
                if step is None:
                    requests.append(("abo_revise", {
                        "task_description": ctx.task_description, "procedure": steps, "errors": shown,
                        "answer_format": self._answer_format(ctx),
                    }))
                else:
                    requests.append(("abo_revise_step", {
                        "task_description": ctx.task_description, "procedure": steps, "step": step, "kind": kind, "errors": shown,
                    }))
            replies = ctx.ask(f"round {round_no}: revise {node.key[:8]}", requests,
                              lambda t: parse_steps(t, "procedure", 2, 20) or parse_steps(t, "steps", 1, 20), "steps")
            for i, ((step, kind), new) in enumerate(zip(plans, replies)):
                if not new or (step is None and len(new) < 2):
                    continue
                new_steps = new if step is None else splice(steps, step, new)
                if not new_steps or new_steps == steps:
                    continue
                new_steps = new_steps[: p["max_steps"] + 4]
                failing = [e.index for e, loc in zip(errors, located) if step is None or (loc and loc["step"] == step)]
                demos, tried = self._demonstrations(ctx, new_steps, f"round {round_no}: demos {node.key[:8]}.{i}", failing)
                notes = {"revised_step": step, "kind": kind, "demos_verified": f"{len(demos)}/{tried}", "diagnosis": diagnosis}
                candidates.append(Candidate(self._prompt(ctx, new_steps, demos, base=node.prompt), "revision", node.key, notes))
        return candidates

    def projected(self, params: dict, beam: int, initial: bool) -> Projected:
        demo_calls = params["demo_attempts"] if params["demos"] else 0
        steps = {"procedure": params["max_steps"]}
        written = max(params["procedures"], 1) if initial else beam * params["revisions"]
        if initial:
            asks = [Asks("abo_procedure", written, {"examples": 3})]
        else:
            errors = params["max_errors"]
            asks = [Asks("abo_locate", beam * errors * bool(params["localise"]), steps),
                    Asks("abo_revise_step" if params["localise"] else "abo_revise", written, {**steps, "errors": errors})]
        return Projected((*asks, Asks("abo_demonstration", written * demo_calls, steps)), written)

    def written(self, params: dict) -> tuple[Asks, ...]:
        return (Asks("abo_procedure", 1), Asks("abo_demonstration", params["demos"], {"examples": 1}))

    # --- parts ---

    @staticmethod
    def _answer_format(ctx: Context) -> str:
        return ctx.bridge.answer_format or "End with the final answer."

    def _prompt(self, ctx: Context, steps: list[str], demos: list[Demonstration], base: Prompt | None = None) -> Prompt:
        base = base or ctx.bridge.default_prompt
        return Prompt(
            instruction=INSTRUCTION, placement=base.placement, procedure=tuple(steps),
            answer_format=self._answer_format(ctx), demonstrations=tuple(demos), answer_prefix="Step 1:",
        )

    def _demonstrations(self, ctx: Context, steps: list[str], purpose: str, preferred: list[int]) -> tuple[list[Demonstration], int]:
        """Up to `demos` demonstrations of the procedure on training examples (the `preferred` ones
        first, e.g. those that failed at a revised step), verified by the task's filter and metric.
        Returns them and the number of examples tried."""
        p = ctx.params
        if not p["demos"]:
            return [], 0
        docs = ctx.bridge.docs("train")
        others = [i for i in ctx.rng(purpose, "order").sample(ctx.train_pool, len(ctx.train_pool)) if i not in preferred]
        tried = (list(dict.fromkeys(preferred)) + others)[: p["demo_attempts"]]
        requests = [
            ("abo_demonstration", {
                "procedure": steps, "question": ctx.bridge.question(docs[i]), "answer_format": self._answer_format(ctx),
                "target_hint": str(docs[i].get("target", "")) if p["hint"] else "",
            })
            for i in tried
        ]
        solutions = ctx.ask(purpose, requests, parse_solution, "solution")
        written = [(docs[i], s) for i, s in zip(tried, solutions) if s]
        if p["verify"] and written:
            checks = ctx.bridge.check([s for _, s in written], [d for d, _ in written])
            written = [(doc, self._trimmed(ctx, doc, s)) for (doc, s), (_, score) in zip(written, checks) if score >= 1.0]
        demos = [Demonstration(doc=doc, output=solution) for doc, solution in written[: p["demos"]]]
        return demos, len(tried)

    @staticmethod
    def _trimmed(ctx: Context, doc: dict, solution: str) -> str:
        """The shortest first lines of a verified solution that still verify: what the optimizer wrote
        after the answer (often the answer-format instruction echoed back) is not worth imitating."""
        lines = solution.splitlines()
        prefixes = ["\n".join(lines[:k]).rstrip() for k in range(1, len(lines) + 1)]
        checks = ctx.bridge.check(prefixes, [doc] * len(prefixes))
        return next((text for text, (_, score) in zip(prefixes, checks) if score >= 1.0), solution)

    @staticmethod
    def _locate(ctx: Context, steps: list[str], errors, purpose: str) -> list[dict | None]:
        requests = [
            ("abo_locate", {"procedure": steps, **ctx.error(e)})
            for e in errors
        ]
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
