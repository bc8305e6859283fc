"""PromptAgent's state transition, which both of its searches use: a prompt and examples of its answers go
to the optimizer, which analyses each and summarises what to improve (the source's error feedback), then
writes new prompts from the examples, the feedback and the trajectory of prompts from the first to the
current one. The examples are its errors; when it got a whole batch right, the right answers (the source's
"ascend" step, which the beam search here never takes: it reflects only on prompts with errors)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from lm_eval_abo.infra import metaprompts
from lm_eval_abo.optimizers.base import Candidate, Context, Node, all_tags, first_tag
from lm_eval_abo.optimizers.instructions import percent, train_scores
from lm_eval_abo.scoring import Sample


@dataclass(frozen=True)
class Step:
    """One transition to ask for: from `node`, shown `samples` (errors, or right answers when `right`), `n`
    new prompts written in the light of `trajectory`."""

    node: Node
    samples: list[Sample]
    trajectory: list[dict]
    n: int
    right: bool = False
    notes: dict | None = None  # what each new prompt's notes also hold


def trajectory(ctx: Context, path: list[Node], examples: int) -> list[dict]:
    """The prompts of `path` (first to current), each with its score on the score subset of `examples`
    train examples (None when no scores are shown)."""
    return [{"instruction": ctx.rewritable(n.prompt).instruction, "score": None if s is None else percent(s)}
            for n, s in zip(path, train_scores(ctx, examples, path))]


def reflection(text: str) -> dict | None:
    """The analyses of the examples, one each, and their summary (required)."""
    summary = first_tag("summary")(text)
    return {"analyses": metaprompts.tagged(text, "analysis"), "summary": summary} if summary else None


def transitions(ctx: Context, purpose: str, steps: list[Step], scored: bool) -> list[Candidate]:
    """The new prompts of every step: the reflections asked together, then the new prompts together."""
    asked = [(s, {"task_description": ctx.task_description, "instruction": ctx.rewritable(s.node.prompt).instruction,
                  "errors": [ctx.error(x) for x in s.samples]}) for s in steps]
    reflections = ctx.ask(f"{purpose}: reflections",
                          [("promptagent_reflect_right" if s.right else "promptagent_reflect", v) for s, v in asked],
                          reflection, "summary")
    asked = [(s, v, r) for (s, v), r in zip(asked, reflections) if r]
    batches = ctx.ask(
        f"{purpose}: new prompts",
        [("promptagent_edit_right" if s.right else "promptagent_edit",
          {**v, **r, "trajectory": s.trajectory, "scored": scored, "n": s.n}) for s, v, r in asked],
        all_tags("prompt"), "prompt", sample=True,
    )
    return [
        Candidate(replace(ctx.rewritable(s.node.prompt), instruction=text), "edit", s.node.key,
                  {"reason": r["summary"], **(s.notes or {})})
        for (s, _, r), texts in zip(asked, batches) for text in (texts or [])[: s.n]
    ]
