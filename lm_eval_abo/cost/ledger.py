"""One ledger for the models of a run: requests, tokens and US dollars of the optimizer, of the target and
of the grader (the model that grades replies for model-graded metrics, e.g. promptfoo's llm-rubric), per
round and in total; the price a model is charged at; and the caps a run keeps to.

The same type holds what was spent and what the projection expects, so the two compare line by line.
A leaf: it imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace


class BudgetExhausted(Exception):
    """A cap was reached; the search stops at its last complete round and keeps the best prompt so far."""


@dataclass(frozen=True)
class Price:
    """US dollars per million prompt (input) and completion (output) tokens."""

    input: float
    output: float
    source: str  # where it comes from: "--target-price", "litellm", "local", ...

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6

    def text(self) -> str:
        return f"${self.input:g} in / ${self.output:g} out per million tokens ({self.source})"


@dataclass
class Usage:
    """One model's side of the ledger."""

    calls: int = 0  # requests asked, answered by the model or by a cache
    cache_hits: int = 0  # of those, answered by a cache: no tokens, no cost
    failures: int = 0  # requests that failed after all retries
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True  # False once a request had no price (its tokens are still counted)
    estimated: bool = False  # True once a token count was estimated (no usage from a server, no tokenizer)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def billed(self) -> int:
        """Requests the model itself answered."""
        return self.calls - self.cache_hits - self.failures

    def add(self, prompt_tokens: int, completion_tokens: int, cost: float | None, estimated: bool = False) -> None:
        """Tokens served and what they cost (None: no price known)."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.estimated |= estimated
        if cost is None:
            self.cost_known = False
        else:
            self.cost_usd += cost

    def _combined(self, other: Usage, sign: int) -> Usage:
        counts = {f.name: getattr(self, f.name) + sign * getattr(other, f.name)
                  for f in fields(self) if f.type in ("int", "float")}
        counts["cost_usd"] = round(counts["cost_usd"], 10)
        return Usage(**counts, cost_known=self.cost_known and other.cost_known, estimated=self.estimated or other.estimated)

    def plus(self, other: Usage) -> Usage:
        return self._combined(other, 1)

    def minus(self, earlier: Usage) -> Usage:
        return self._combined(earlier, -1)

    def scaled(self, factor: float) -> Usage:
        """What `factor` times these requests would use (a projection's arithmetic)."""
        counts = {f.name: getattr(self, f.name) * factor for f in fields(self) if f.type == "int"}
        return Usage(**{k: round(v) for k, v in counts.items()}, cost_usd=self.cost_usd * factor,
                     cost_known=self.cost_known, estimated=self.estimated)

    def copy(self) -> Usage:
        return Usage(**asdict(self))

    def load(self, saved: Usage) -> None:
        """Take over `saved`'s counts, in place (the client and the target keep this object)."""
        for f in fields(self):
            setattr(self, f.name, getattr(saved, f.name))

    def to_dict(self) -> dict:
        return {**asdict(self), "cost_usd": round(self.cost_usd, 10)}

    @classmethod
    def from_dict(cls, data: dict) -> Usage:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class Ledger:
    """The three lines: the optimizer's calls, the target's requests, the grader's calls."""

    optimizer: Usage = field(default_factory=Usage)
    target: Usage = field(default_factory=Usage)
    grader: Usage = field(default_factory=Usage)

    SIDES = ("optimizer", "target", "grader")

    @property
    def cost_usd(self) -> float:
        return round(self.optimizer.cost_usd + self.target.cost_usd + self.grader.cost_usd, 10)

    @property
    def cost_known(self) -> bool:
        return self.optimizer.cost_known and self.target.cost_known and self.grader.cost_known

    def snapshot(self) -> Ledger:
        return Ledger(self.optimizer.copy(), self.target.copy(), self.grader.copy())

    def plus(self, other: Ledger) -> Ledger:
        return Ledger(*(getattr(self, s).plus(getattr(other, s)) for s in self.SIDES))

    def minus(self, earlier: Ledger) -> Ledger:
        return Ledger(*(getattr(self, s).minus(getattr(earlier, s)) for s in self.SIDES))

    def load(self, saved: Ledger) -> None:
        for side in self.SIDES:
            getattr(self, side).load(getattr(saved, side))

    def to_dict(self) -> dict:
        return {"optimizer": self.optimizer.to_dict(), "target": self.target.to_dict(), "grader": self.grader.to_dict(),
                "cost_usd": self.cost_usd, "cost_known": self.cost_known}

    @classmethod
    def from_dict(cls, data: dict) -> Ledger:
        return cls(*(Usage.from_dict(data.get(side) or {}) for side in cls.SIDES))


def total(ledgers) -> Ledger:
    out = Ledger()
    for ledger in ledgers:
        out = out.plus(ledger)
    return out


@dataclass(frozen=True)
class Caps:
    """The hard caps of a run, over both models (None: no cap)."""

    max_cost: float | None = None  # dollars, optimizer, target and grader together
    max_target_tokens: int | None = None
    max_optimizer_calls: int | None = None

    def fit(self, ledger: Ledger) -> bool:
        """Whether `ledger` keeps to every cap."""
        return ((self.max_cost is None or ledger.cost_usd <= self.max_cost)
                and (self.max_target_tokens is None or ledger.target.tokens <= self.max_target_tokens)
                and (self.max_optimizer_calls is None or ledger.optimizer.calls <= self.max_optimizer_calls))


@dataclass
class Budget:
    """The caps over the live ledger while the search runs. The projected test evaluation (`reserve`, and
    the grader's part of it) is kept aside, so the best prompt can still be evaluated on test within the
    caps; an optimizer call or a target pass (with the grader calls that grade its replies) is refused
    when, at the mean size of those before it, it would not fit."""

    ledger: Ledger
    caps: Caps = field(default_factory=Caps)
    reserve: Usage = field(default_factory=Usage)  # the target's projected test evaluation
    per_request: Usage = field(default_factory=Usage)  # one projected target request, until one is measured
    grader_reserve: Usage = field(default_factory=Usage)  # the grader's projected part of the test evaluation
    grader_per_request: Usage = field(default_factory=Usage)  # the grader's projected use per target request

    def optimizer_call(self) -> None:
        """Before each optimizer call (under the client's lock)."""
        most = self.caps.max_optimizer_calls
        if most is not None and self.ledger.optimizer.calls >= most:
            raise BudgetExhausted(f"--max-optimizer-calls {most} reached")
        self._check(0, _mean(self.ledger.optimizer, Usage()).cost_usd, "the next optimizer call")

    def target_pass(self, requests: int) -> None:
        """Before the search sends `requests` requests to the target in one lm-eval pass (and has the
        grader grade their replies)."""
        coming = _mean(self.ledger.target, self.per_request).scaled(requests)
        grading = self._grading_per_request().cost_usd * requests
        self._check(coming.tokens, coming.cost_usd + grading, f"the next {requests} target requests")

    def _grading_per_request(self) -> Usage:
        """The grader's mean use per target request so far (the projection's, before any)."""
        grader, target = self.ledger.grader, self.ledger.target
        if not grader.calls or not target.calls:
            return self.grader_per_request
        return Usage(cost_usd=grader.cost_usd / target.calls)

    def _check(self, tokens: int, cost: float, what: str) -> None:
        spent, caps = self.ledger, self.caps
        kept = replace(self.reserve, cost_usd=self.reserve.cost_usd + self.grader_reserve.cost_usd)
        if caps.max_target_tokens is not None and spent.target.tokens + tokens + kept.tokens > caps.max_target_tokens:
            raise BudgetExhausted(
                f"--max-target-tokens {caps.max_target_tokens:,} reached ({spent.target.tokens:,} spent, about "
                f"{tokens:,} for {what}, {kept.tokens:,} kept for the test evaluation)")
        if caps.max_cost is not None and spent.cost_usd + cost + kept.cost_usd > caps.max_cost:
            raise BudgetExhausted(
                f"--max-cost ${caps.max_cost:g} reached (${spent.cost_usd:.4f} spent, about ${cost:.4f} for {what}, "
                f"${kept.cost_usd:.4f} kept for the test evaluation)")


def _mean(usage: Usage, otherwise: Usage) -> Usage:
    """Tokens and cost of one billed request of `usage` on average (`otherwise` before any)."""
    if not usage.billed:
        return otherwise
    per = 1 / usage.billed
    return Usage(prompt_tokens=round(usage.prompt_tokens * per), completion_tokens=round(usage.completion_tokens * per),
                 cost_usd=usage.cost_usd * per)
