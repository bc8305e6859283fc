"""What both studies share: the prompt studied, the seeds of the optimizer's calls, where results go."""

from __future__ import annotations

from pathlib import Path

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra.files import write_json, write_text_atomic
from lm_eval_abo.optimizers.base import Context


def studied_prompt(session, artifact: str | None) -> Prompt:
    """An artifact's prompt, or the task's baseline."""
    return store.load(artifact, task=session.task_name).prompt if artifact else session.bridge.default_prompt


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def answered_seeds(ctx: Context, purpose: str, n: int, calls: list[dict]) -> list[int | None]:
    """The seed of the call whose reply each of `n` requests of one `ctx.ask` kept (the last attempt
    made: a reply that did not parse is asked again with the next seed), from the recorded calls."""
    asked = {call["seed"] for call in calls if call["purpose"] == purpose}
    seeds = []
    for i in range(n):
        tried = [s for a in range(ctx.calls.format_retries + 1) if (s := ctx.seed_for(purpose, i, a)) in asked]
        seeds.append(tried[-1] if tried else None)
    return seeds


def save(config: OptimizeConfig, study: str, result: dict, markdown: str, out) -> None:
    """<output>/<task>/diagnose/<study>.json and .md; the markdown is printed too."""
    folder = Path(config.output) / config.task / "diagnose"
    write_json(folder / f"{study}.json", result)
    write_text_atomic(folder / f"{study}.md", markdown + "\n")
    out(markdown)
    out(f"\nwritten: {folder / f'{study}.json'} and {study}.md")
