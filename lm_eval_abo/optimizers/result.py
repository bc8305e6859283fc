"""What a search keeps: its mutable state, saved after every round (`SearchState`, the checkpoint in
state.json), the typed record of each round (`RoundRecord`), and the frozen result readers use
(`SearchResult`: the best prompt and the baseline named, the rounds, why it stopped, the ledger).

The dictionaries the records and the state write are those earlier versions wrote, so a run directory or
an artifact written before these types still loads, resumes and exports."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.cost.ledger import Ledger, Usage
from lm_eval_abo.optimizers.base import Candidate, Dropped, Node

# A round record's wall times: the whole round, target scoring (train batches and dev candidates through
# lm-eval), and the rest, which is the optimizer (its calls and the method's own work). Differ between runs.
TIMINGS = ("seconds", "target_seconds", "optimizer_seconds")


@dataclass(frozen=True)
class CandidateRecord:
    """A candidate as its round's record lists it (keys shortened to 12 characters)."""

    key: str
    origin: str
    parent: str | None
    dev: float
    notes: dict = field(default_factory=dict)

    @classmethod
    def of(cls, node: Node) -> CandidateRecord:
        c = node.candidate
        return cls(node.key[:12], c.origin, (c.parent or "")[:12] or None, node.dev, c.notes)

    def to_dict(self) -> dict:
        return {"key": self.key, "origin": self.origin, "parent": self.parent, "dev": self.dev,
                **({"notes": self.notes} if self.notes else {})}

    @classmethod
    def from_dict(cls, d: dict) -> CandidateRecord:
        return cls(d["key"], d["origin"], d.get("parent"), d["dev"], d.get("notes") or {})


@dataclass(frozen=True)
class BestRecord:
    """The best prompt after a round; a new best's paired p-value against the one it displaced, the number
    of the round's candidates it was the highest of, that p-value corrected for it (Bonferroni), and
    whether the gain is within noise at the run's alpha (records of older runs lack the correction)."""

    key: str
    dev: float
    stderr: float | None
    n: int
    gain_p: float | None = None
    within_noise: bool | None = None
    compared: int | None = None
    gain_p_adjusted: float | None = None

    def to_dict(self) -> dict:
        gain = {"gain_p": self.gain_p, "within_noise": self.within_noise} if self.gain_p is not None else {}
        if self.compared is not None:
            gain |= {"compared": self.compared, "gain_p_adjusted": self.gain_p_adjusted}
        return {"key": self.key, "dev": self.dev, "stderr": self.stderr, "n": self.n, **gain}

    @classmethod
    def from_dict(cls, d: dict) -> BestRecord:
        return cls(d["key"], d["dev"], d.get("stderr"), d.get("n", 0), d.get("gain_p"), d.get("within_noise"),
                   d.get("compared"), d.get("gain_p_adjusted"))


@dataclass(frozen=True)
class RoundRecord:
    """One completed round: its candidates, the best prompt after it, the dev examples that best fixed and
    broke against the previous best, what it used of both models, its wall times, the candidates rejected
    before scoring, what the method said of it, and the target requests of the method's own scoring."""

    round: int
    candidates: tuple[CandidateRecord, ...]
    best: BestRecord
    mean_dev: float | None
    flips: dict
    optimizer: Usage
    target: Usage
    seconds: float | None = None
    target_seconds: float | None = None
    optimizer_seconds: float | None = None
    dropped: tuple[Dropped, ...] = ()
    notes: dict = field(default_factory=dict)
    method_requests: int = 0  # of `target`, the requests of the method's own scoring (OPRO's train scores, GEPA)
    grader: Usage = field(default_factory=Usage)  # the grader's calls for the round's scores (model-graded metrics)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.optimizer, self.target, self.grader)

    def to_dict(self) -> dict:
        timings = {k: getattr(self, k) for k in TIMINGS if getattr(self, k) is not None}
        return {
            "round": self.round, "candidates": [c.to_dict() for c in self.candidates], "best": self.best.to_dict(),
            "mean_dev": self.mean_dev, **({"dropped": [d.to_dict() for d in self.dropped]} if self.dropped else {}),
            **({"notes": copy.deepcopy(self.notes)} if self.notes else {}), "flips": self.flips,
            "optimizer": self.optimizer.to_dict(), "target": self.target.to_dict(), **timings,
            **({"method_requests": self.method_requests} if self.method_requests else {}),
            **({"grader": self.grader.to_dict()} if self.grader.calls else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RoundRecord:
        return cls(
            round=d["round"], candidates=tuple(CandidateRecord.from_dict(c) for c in d["candidates"]),
            best=BestRecord.from_dict(d["best"]), mean_dev=d.get("mean_dev"),
            flips=d.get("flips") or {"fixed": [], "broken": []},
            optimizer=Usage.from_dict(d.get("optimizer") or {}), target=Usage.from_dict(d.get("target") or {}),
            **{k: d.get(k) for k in TIMINGS},
            dropped=tuple(Dropped(**x) for x in d.get("dropped", [])), notes=d.get("notes") or {},
            method_requests=d.get("method_requests", 0), grader=Usage.from_dict(d.get("grader") or {}),
        )


@dataclass
class SearchState:
    """The search while it runs, and its checkpoint."""

    round: int = -1  # the last completed round
    nodes: list[Node] = field(default_factory=list)  # every scored candidate, in the order scored
    beam: list[str] = field(default_factory=list)  # keys, best first
    trace: list[RoundRecord] = field(default_factory=list)  # one record per completed round
    ledger: Ledger = field(default_factory=Ledger)  # both models' requests, tokens and dollars so far
    stopped: str | None = None  # why the search ended before its last round
    templates: list[str] = field(default_factory=list)  # meta-prompts rendered so far (includes too)
    method_state: dict = field(default_factory=dict)  # what the method keeps from round to round (GEPA's seed)

    def node(self, key: str) -> Node:
        return next(n for n in self.nodes if n.key == key)

    @property
    def best(self) -> Node:
        return self.node(self.beam[0])

    def to_dict(self) -> dict:
        return {
            "round": self.round,
            "nodes": [_node_to_dict(n) for n in self.nodes],
            "beam": self.beam,
            "trace": [r.to_dict() for r in self.trace],
            "ledger": self.ledger.to_dict(),
            "stopped": self.stopped,
            "templates": self.templates,
            **({"method_state": copy.deepcopy(self.method_state)} if self.method_state else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SearchState:
        return cls(
            round=data["round"],
            nodes=[_node_from_dict(n) for n in data["nodes"]],
            beam=data["beam"],
            trace=[RoundRecord.from_dict(r) for r in data["trace"]],
            ledger=Ledger.from_dict(data["ledger"]),
            stopped=data.get("stopped"),
            templates=data.get("templates", []),
            method_state=data.get("method_state") or {},
        )


def _node_to_dict(node: Node) -> dict:
    c = node.candidate
    return {
        "prompt": c.prompt.to_dict(), "origin": c.origin, "parent": c.parent, "notes": copy.deepcopy(c.notes), "round": node.round,
        "dev": node.dev, "dev_stderr": node.dev_stderr, "dev_n": node.dev_n,
        "dev_per_example": {str(k): v for k, v in node.dev_per_example.items()},
    }


def _node_from_dict(d: dict) -> Node:
    candidate = Candidate(Prompt.from_dict(d["prompt"]), d["origin"], d["parent"], d["notes"])
    per_example = {int(k) if k.isdigit() else k: v for k, v in d["dev_per_example"].items()}  # "label:index": several targets
    return Node(candidate, d["round"], d["dev"], d["dev_stderr"], d["dev_n"], per_example)


@dataclass(frozen=True)
class SearchResult:
    """A finished search as readers see it."""

    best: Node
    baseline: Node
    nodes: tuple[Node, ...]
    rounds: tuple[RoundRecord, ...]
    stopped: str | None  # why it ended before its last round (a cap, patience), None: it ran them all
    ledger: Ledger
    templates: tuple[str, ...]

    @classmethod
    def from_state(cls, state: SearchState) -> SearchResult:
        return cls(best=state.best, baseline=state.nodes[0], nodes=tuple(state.nodes), rounds=tuple(state.trace),
                   stopped=state.stopped, ledger=state.ledger.snapshot(), templates=tuple(state.templates))

    @property
    def last_round(self) -> int:
        return self.rounds[-1].round if self.rounds else -1

    def node(self, key: str) -> Node:
        """A node by its key, or by the 12-character key a round record names it by."""
        return next(n for n in self.nodes if n.key == key or n.key[:12] == key)

    def best_after(self, record: RoundRecord) -> Node:
        return self.node(record.best.key)
