"""What every method shares with the loop: candidates and scored nodes, the narrow view of the task a
method sees (`TaskView`), the one recorded path to the optimizer (`OptimizerCalls`), the context a method
works in (frozen for the run), the round it is given, the proposal it returns, and the `Method` contract."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.infra import metaprompts
from lm_eval_abo.scoring import Sample, Score

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


@dataclass(frozen=True)
class Node:
    """A candidate with its dev score."""

    candidate: Candidate
    round: int
    dev: float
    dev_stderr: float | None
    dev_n: int
    dev_per_example: dict[int | str, float]  # by `Sample.key`: the example (and the model, with several targets)

    @property
    def key(self) -> str:
        return self.candidate.key

    @property
    def prompt(self) -> Prompt:
        return self.candidate.prompt


class TaskView(Protocol):
    """The task as a method sees it: its training documents, questions and gold answers, scoring on train
    and dev through lm-eval, the task's own filter and metric applied to text written elsewhere, and what
    the meta-prompts say of it. The bridge to lm-eval implements it; a unit test may fake it."""

    higher_is_better: bool
    threshold: float  # below it (above, where lower is better): an error; 0/1 metrics 1, graded ones their own
    # default or --error-threshold (`tasks.metrics`)
    metric_key: str
    default_prompt: Prompt  # the baseline
    task_description: str
    answer_format: str  # how an answer must end so the task's filter finds it ("" if unknown)
    models: tuple[str, ...]  # the labels of the targets a score's samples come from ("": the run's one target)

    def docs(self, split: str) -> list[dict]: ...

    def question(self, doc: dict) -> str: ...

    def gold(self, doc: dict) -> str: ...

    def score(self, prompts: list[Prompt], split: str, indices: list[int]) -> list[Score]: ...

    def check(self, outputs: list[str], docs: list[dict]) -> list[tuple[str, float]]: ...

    def correct(self, score: float) -> bool: ...


class OptimizerCalls:
    """The one way to the optimizer: each call's meta-prompt rendered from its template, asked through the
    client (its cache, retries, budget and ledger), its reply parsed, and the call handed to `record` with
    the round it belongs to (the loop sets `round`), its rendered messages, seed and temperature."""

    def __init__(self, llm, seed: int, sampling_temperature: float | None = None, format_retries: int = 1,
                 record: Callable[[dict], None] | None = None):
        self.llm, self.seed, self.format_retries = llm, seed, format_retries
        self.sampling_temperature = sampling_temperature
        self._record = record or (lambda call: None)
        self.round = 0
        self.templates: set[str] = set()  # meta-prompts rendered so far, includes too

    def record(self, call: dict) -> None:
        self._record({"round": self.round, **call})

    def seed_for(self, *purpose) -> int:
        text = f"{self.seed}:" + ":".join(map(str, purpose))
        return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)

    def refused(self) -> str | None:
        """Why the budget would refuse the next call (a cap reached), or None."""
        return self.llm.exhausted()

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
                self.record({"purpose": purpose, "template": requests[i][0], "attempt": attempt, "seed": seed,
                             "temperature": temperature, "messages": sent, "reply": reply})
            pending = [i for i in pending if results[i] is None and replies[i] is not None]
            if not pending:
                break
        for i in pending:
            log.warning("%s: dropped a reply without <%s>...</%s>: %r", purpose, tag, tag, (replies[i] or "")[:120])
        return results

    def written(self, purpose: str, template: str, messages: list[dict], seed: int) -> str | None:
        """One call whose messages another engine wrote (GEPA's reflection prompt, named `template`),
        asked deterministically and recorded like every call; None when it failed after its retries."""
        [reply] = self.llm.complete_many([(messages, seed)], desc=purpose)
        self.record({"purpose": purpose, "template": template, "attempt": 0, "seed": seed, "temperature": None,
                     "messages": messages, "reply": reply})
        return reply


@dataclass(frozen=True)
class Context:
    """What a method may use, the same for the whole run: the task (`TaskView`), the optimizer calls, its
    parameters, the seed, the train examples it may use, the dev examples candidates are scored on, and how
    many new candidates a round asks for when the run sets it for every method (`--candidates`)."""

    task: TaskView
    calls: OptimizerCalls
    params: object  # the method's frozen parameters (`Params`)
    seed: int
    train_pool: list[int]  # train examples the run may use
    dev_indices: list[int] = field(default_factory=list)
    engine_dir: Path | None = None  # where a method that runs an engine of its own lets it keep its state (GEPA)
    candidates: int | None = None  # new candidates per round (None: as the method's parameters make them)

    @property
    def task_description(self) -> str:
        return self.task.task_description

    def recorded(self, record: Callable[[dict], None], sampling_temperature: float | None = None) -> Context:
        """This context with its optimizer calls handed to `record` (a study keeps its calls so), its sampling
        calls at `sampling_temperature` if given."""
        calls = self.calls
        temperature = calls.sampling_temperature if sampling_temperature is None else sampling_temperature
        return replace(self, calls=OptimizerCalls(calls.llm, calls.seed, temperature, calls.format_retries, record))

    @property
    def base_prompt(self) -> Prompt:
        """The prompt new instructions are written into: the baseline, with the answer format the task needs."""
        base = self.task.default_prompt
        return base if base.answer_format else replace(base, answer_format=self.task.answer_format)

    def rewritable(self, prompt: Prompt) -> Prompt:
        """The prompt an instruction method rewrites. A task as written (the baseline of a task that is not
        the plugin's own has no instruction of ours) stands for its own description, with the answer format."""
        if prompt.instruction or prompt.procedure:
            return prompt
        return replace(self.base_prompt, instruction=self.task_description)

    def rng(self, *purpose) -> random.Random:
        return random.Random(f"{self.seed}:" + ":".join(map(str, purpose)))

    def seed_for(self, *purpose) -> int:
        return self.calls.seed_for(*purpose)

    def ask(self, purpose: str, requests: list[tuple[str, dict]], parse: Callable[[str], object], tag: str,
            sample: bool = False) -> list:
        return self.calls.ask(purpose, requests, parse, tag, sample)

    def example(self, doc: dict) -> dict:
        """A training example as the meta-prompts show it."""
        return {"question": self.task.question(doc), "target": self.task.gold(doc)}

    def error(self, sample: Sample) -> dict:
        """A target mistake as the meta-prompts show it."""
        return {"question": self.task.question(sample.doc), "target": sample.target, "output": sample.output,
                "answer": sample.answer, **({"model": sample.model} if sample.model else {})}


@dataclass(frozen=True)
class Round:
    """A later round as the loop hands it to a method: its number, the beam (best first), every node scored
    so far, the train-minibatch samples of the beam prompts whose errors the method wanted, and the state
    the method returned last round (GEPA's)."""

    number: int
    beam: list[Node]
    history: list[Node]
    train: dict[str, list[Sample]] = field(default_factory=dict)  # by node key
    state: dict = field(default_factory=dict)

    def errors(self, node: Node) -> list[Sample]:
        """The node's train errors this round (none when its train batch was not scored)."""
        return [s for s in self.train.get(node.key, []) if not s.correct]


@dataclass(frozen=True)
class Dropped:
    """A candidate left out before scoring, and why (the round's record lists it)."""

    key: str
    origin: str
    reason: str

    @classmethod
    def of(cls, candidate: Candidate, reason: str) -> Dropped:
        return cls(candidate.key[:12], candidate.origin, reason)

    def to_dict(self) -> dict:
        return {"key": self.key, "origin": self.origin, "reason": self.reason}


@dataclass(frozen=True)
class Proposal:
    """What a method returns for a round: new candidates, those it dropped itself and why, what it says of
    the round as a whole (plain values), its state for the next round (None: unchanged), and, when it has
    nothing more to propose (PromptAgent's tree search after its iterations), why (the search then stops)."""

    candidates: list[Candidate] = field(default_factory=list)
    dropped: tuple[Dropped, ...] = ()
    notes: dict = field(default_factory=dict)
    state: dict | None = None
    finished: str | None = None


@dataclass(frozen=True)
class Asks:
    """Calls of one meta-prompt, as the projection counts them."""

    template: str
    calls: int
    shows: dict = field(default_factory=dict)  # lengths of the template's lists (examples, errors, ...) and its `n`


@dataclass(frozen=True)
class Projected:
    """At most what one round of a method uses: the optimizer calls by meta-prompt, the new candidates, the
    train examples behind the score each candidate is shown with (OPRO, PromptAgent), whether the round
    reads the beam's train errors (a minibatch per beam prompt), the train examples the method scores
    itself (PromptAgent's expansion batches), and the target requests of a round that an engine of its own
    runs (GEPA; None: counted from the candidates)."""

    asks: tuple[Asks, ...]
    candidates: int
    shown: int = 0
    reads_errors: bool = False
    scored: int = 0
    engine_requests: int | None = None

    @property
    def calls(self) -> int:
        return sum(a.calls for a in self.asks)


def quotas(total: int, parts: int) -> list[int]:
    """`total` dealt over `parts` as evenly as can be, the first ones one more (a round's --candidates over the
    prompts it expands)."""
    if parts <= 0:
        return []
    each, extra = divmod(total, parts)
    return [each + (i < extra) for i in range(parts)]


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
    """A prompt-optimization method: proposes candidates; the shared search loop scores and selects."""

    name: str
    params: object  # its default parameters, a frozen dataclass of flags (`params.Params`)
    paper: object  # the same with what `--preset paper` sets: the values the method's source publishes
    patience: int | None  # the method's own early stop (rounds without dev improvement), None: never
    needs_generation: bool  # whether it needs the target's generated text (not a multiple-choice task)

    def wants_errors(self, node: Node) -> bool:
        """Whether a later round reads this beam node's train errors (which cost target requests)."""
        ...

    def initial(self, ctx: Context, beam: int) -> Proposal: ...

    def propose(self, ctx: Context, round: Round) -> Proposal: ...

    def projected(self, params, beam: int, initial: bool, n_dev: int, candidates: int | None = None) -> Projected:
        """At most what round 0 (initial=True) or a later round uses, before format retries (`candidates`: the
        run's --candidates)."""
        ...

    def written(self, params) -> tuple[Asks, ...]:
        """The optimizer replies a candidate prompt is made of, each asked once per `calls` (what a
        candidate adds to the target's prompt, for the projection)."""
        ...
