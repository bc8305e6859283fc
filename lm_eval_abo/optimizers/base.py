"""What every method shares: candidates, scored nodes, the context a method works in, its interface."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from lm_eval_abo import metaprompts
from lm_eval_abo.cost.ledger import Ledger
from lm_eval_abo.llm import OptimizerLLM
from lm_eval_abo.prompt import Prompt
from lm_eval_abo.scoring import Bridge, Sample

log = logging.getLogger("lm_eval_abo")


@dataclass
class Candidate:
    """A proposed prompt and how it came about."""

    prompt: Prompt
    origin: str  # baseline, initial, paraphrase, edit, revision, ...
    parent: str | None = None  # key of the prompt it was derived from
    notes: dict = field(default_factory=dict)  # reflections and other method data, as plain values

    @property
    def key(self) -> str:
        return self.prompt.sha256()


@dataclass
class Node:
    """A candidate with its dev score (and, while a round runs, its train-batch results)."""

    candidate: Candidate
    round: int
    dev: float
    dev_stderr: float | None
    dev_n: int
    dev_per_example: dict[int, float]
    train_samples: list[Sample] = field(default_factory=list)  # not kept in checkpoints

    @property
    def key(self) -> str:
        return self.candidate.key

    @property
    def prompt(self) -> Prompt:
        return self.candidate.prompt

    def train_errors(self) -> list[Sample]:
        return [s for s in self.train_samples if not s.correct]


@dataclass
class Context:
    """Everything a method may use: the optimizer, the task (through the bridge), settings, seeds."""

    llm: OptimizerLLM
    bridge: Bridge
    params: dict
    seed: int
    train_pool: list[int]  # train examples the run may use
    dev_indices: list[int] = field(default_factory=list)  # the dev examples candidates are scored on
    run_dir: Path | None = None  # where a method with its own engine keeps that engine's state (GEPA)
    format_retries: int = 1
    sampling_temperature: float | None = None  # of the calls that sample (see `ask`); None: the optimizer's own
    templates: set[str] = field(default_factory=set)  # meta-prompts rendered so far, includes too
    round: int = 0  # the round the calls belong to (the search sets it)
    dropped: list[dict] = field(default_factory=list)  # candidates dropped this round before scoring, and why
    record_call: Callable[[dict], None] | None = None  # receives every call: meta-prompt, reply, seed, temperature
    round_notes: dict = field(default_factory=dict)  # what a method says of the round as a whole (plain values)

    @property
    def ledger(self) -> Ledger:
        """The live counts of both models: the optimizer's calls and the target's requests."""
        return Ledger(self.llm.usage, self.bridge.counter.usage)

    @property
    def task_description(self) -> str:
        return self.bridge.task_description

    @property
    def base_prompt(self) -> Prompt:
        """The prompt new instructions are written into: the baseline, with the answer format the task needs."""
        base = self.bridge.default_prompt
        return base if base.answer_format else replace(base, answer_format=self.bridge.answer_format)

    def drop(self, candidate: Candidate, reason: str) -> None:
        """Leave a candidate out of the round (the round's record lists it with the reason)."""
        self.dropped.append({"key": candidate.key[:12], "origin": candidate.origin, "reason": reason})

    def rewritable(self, prompt: Prompt) -> Prompt:
        """The prompt an instruction method rewrites. A task as written (the baseline of a task that is not
        the plugin's own has no instruction of ours) stands for its own description, with the answer format."""
        if prompt.instruction or prompt.procedure:
            return prompt
        return replace(self.base_prompt, instruction=self.task_description)

    def rng(self, *purpose) -> random.Random:
        return random.Random(f"{self.seed}:" + ":".join(map(str, purpose)))

    def seed_for(self, *purpose) -> int:
        text = f"{self.seed}:" + ":".join(map(str, purpose))
        return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)

    def example(self, doc: dict) -> dict:
        """A training example as the meta-prompts show it."""
        return {"question": self.bridge.question(doc), "target": self.bridge.gold(doc)}

    def error(self, sample: Sample) -> dict:
        """A target mistake as the meta-prompts show it."""
        return {"question": self.bridge.question(sample.doc), "target": sample.target, "output": sample.output,
                "answer": sample.answer}

    def ask(self, purpose: str, requests: list[tuple[str, dict]], parse: Callable[[str], object], tag: str,
            sample: bool = False) -> list:
        """Render each (template, variables), ask the optimizer, parse each reply. A reply that does
        not parse is asked again (up to `format_retries` times), then dropped with a warning. Calls that
        `sample` (new instructions, paraphrases, edits: resampling needs variety) use the sampling
        temperature; the others (reflections, ABO's procedures, demonstrations and diagnoses) do not."""
        temperature = self.sampling_temperature if sample else None
        messages = [metaprompts.render(name, **variables) for name, variables in requests]
        for name, _ in requests:
            self.templates.update(metaprompts.closure(name))
        pending = list(range(len(requests)))
        results: list = [None] * len(requests)
        replies: list[str | None] = [None] * len(requests)
        for attempt in range(self.format_retries + 1):
            batch = []
            for i in pending:
                if attempt and replies[i] is not None:  # show the bad reply and ask for the tagged part
                    self.templates.add("format_reminder")
                    messages[i] = messages[i] + [
                        {"role": "assistant", "content": replies[i]},
                        *metaprompts.render("format_reminder", tag=tag),
                    ]
                batch.append((messages[i], self.seed_for(purpose, i, attempt)))
            answered = self.llm.complete_many(batch, desc=purpose, temperature=temperature)
            for i, (sent, seed), reply in zip(pending, batch, answered):
                replies[i] = reply
                results[i] = parse(reply) if reply is not None else None
                if self.record_call:
                    self.record_call({"round": self.round, "purpose": purpose, "template": requests[i][0], "attempt": attempt,
                                      "seed": seed, "temperature": temperature, "messages": sent, "reply": reply})
            pending = [i for i in pending if results[i] is None and replies[i] is not None]
            if not pending:
                break
        for i in pending:
            log.warning("%s: dropped a reply without <%s>...</%s>: %r", purpose, tag, tag, (replies[i] or "")[:120])
        return results


@dataclass(frozen=True)
class Asks:
    """Calls of one meta-prompt, as the projection counts them."""

    template: str
    calls: int
    shows: dict = field(default_factory=dict)  # lengths of the template's lists (examples, errors, ...) and its `n`


@dataclass(frozen=True)
class Projected:
    """At most what one round of a method asks the optimizer, and the new candidates it makes."""

    asks: tuple[Asks, ...]
    candidates: int

    @property
    def calls(self) -> int:
        return sum(a.calls for a in self.asks)


def first_tag(tag: str) -> Callable[[str], str | None]:
    def parse(text: str) -> str | None:
        found = metaprompts.tagged(text, tag)
        return found[0] if found else None

    return parse


def all_tags(tag: str) -> Callable[[str], list[str] | None]:
    def parse(text: str) -> list[str] | None:
        return metaprompts.tagged(text, tag) or None

    return parse


class Method(Protocol):
    """A prompt-optimization method: proposes candidates; the shared search loop scores and selects.
    Every member is read by the loop, the config or the projection."""

    name: str
    defaults: dict  # method parameters, documented in the README
    paper: dict  # what `--preset paper` changes: the values the method's source publishes
    choices: dict[str, tuple[str, ...]]  # the values of each text parameter (the others are whole numbers)
    uses_errors: bool  # whether later rounds read the beam's train errors (which cost target requests)
    patience: int | None  # the method's own early stop (rounds without dev improvement), None: never
    needs_generation: bool  # whether it needs the target's generated text (not a multiple-choice task)

    def wants_errors(self, node: Node) -> bool:
        """Whether a round reads this beam node's train errors (only asked when `uses_errors`)."""
        ...

    def initial(self, ctx: Context, beam: int) -> list[Candidate]: ...

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round: int) -> list[Candidate]: ...

    def projected(self, params: dict, beam: int, initial: bool) -> Projected:
        """At most what round 0 (initial=True) or a later round asks the optimizer, before format retries,
        and how many new candidates it makes. A method whose later rounds run an engine of its own on a
        metric-call budget (GEPA) also has `projected_engine(params, n_dev) -> (Projected, target requests)`."""
        ...

    def written(self, params: dict) -> tuple[Asks, ...]:
        """The optimizer replies a candidate prompt is made of, each asked once per `calls` (what a
        candidate adds to the target's prompt, for the projection)."""
        ...
