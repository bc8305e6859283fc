"""The one search loop every method runs in: propose, score through lm-eval, select, record.

Split discipline: reflections see train errors only, selection sees dev scores only; the test split is
not reachable from here (the bridge refuses it). After every completed round the state is handed to
`checkpoint`, so a crashed run resumes from its last completed round.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from lm_eval_abo.ledger import BudgetExhausted, Ledger
from lm_eval_abo.optimizers.base import Candidate, Context, Method, Node
from lm_eval_abo.prompt import Prompt

# A round record's wall times: the whole round, target scoring (train batches and dev candidates through
# lm-eval), and the rest, which is the optimizer (its calls and the method's own work). Differ between runs.
TIMINGS = ("seconds", "target_seconds", "optimizer_seconds")


@dataclass
class SearchState:
    round: int = -1  # the last completed round
    nodes: list[Node] = field(default_factory=list)  # every scored candidate, in the order scored
    beam: list[str] = field(default_factory=list)  # keys, best first
    trace: list[dict] = field(default_factory=list)  # one record per completed round
    ledger: Ledger = field(default_factory=Ledger)  # both models' requests, tokens and dollars so far
    stopped: str | None = None  # why the search ended before its last round
    templates: list[str] = field(default_factory=list)  # meta-prompts rendered so far (includes too)

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
            "trace": copy.deepcopy(self.trace),
            "ledger": self.ledger.to_dict(),
            "stopped": self.stopped,
            "templates": self.templates,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SearchState:
        return cls(
            round=data["round"],
            nodes=[_node_from_dict(n) for n in data["nodes"]],
            beam=data["beam"],
            trace=data["trace"],
            ledger=Ledger.from_dict(data["ledger"]),
            stopped=data.get("stopped"),
            templates=data.get("templates", []),
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
    per_example = {int(k): v for k, v in d["dev_per_example"].items()}
    return Node(candidate, d["round"], d["dev"], d["dev_stderr"], d["dev_n"], per_example)


def flips(before: Node, after: Node) -> dict[str, list[int]]:
    """Dev examples the new best fixed and broke, compared with the previous best."""
    common = before.dev_per_example.keys() & after.dev_per_example.keys()
    return {
        "fixed": sorted(i for i in common if after.dev_per_example[i] > before.dev_per_example[i]),
        "broken": sorted(i for i in common if after.dev_per_example[i] < before.dev_per_example[i]),
    }


@dataclass(frozen=True)
class RoundStart:
    """The counters when a round starts; the round's record shows what it used since."""

    time: float
    ledger: Ledger
    target_seconds: float

    @classmethod
    def of(cls, ctx: Context) -> RoundStart:
        return cls(time.time(), ctx.ledger.snapshot(), ctx.bridge.target_seconds)


class Search:
    def __init__(self, method: Method, ctx: Context, beam_size: int, dev_indices: list[int], minibatch: int, patience: int | None):
        self.method, self.ctx = method, ctx
        self.beam_size, self.dev_indices = beam_size, dev_indices
        self.minibatch, self.patience = minibatch, patience

    def _score_new(self, state: SearchState, candidates: list[Candidate], round_no: int, capped: bool = True) -> list[Node]:
        known = {n.key for n in state.nodes}
        fresh: dict[str, Candidate] = {}
        for c in candidates:
            empty = not (c.prompt.instruction.strip() or c.prompt.procedure) and c.origin != "baseline"
            if c.key not in known and c.key not in fresh and not empty:
                fresh[c.key] = c
        scores = self.ctx.bridge.score([c.prompt for c in fresh.values()], "dev", self.dev_indices, capped)
        nodes = [
            Node(c, round_no, s.value, s.stderr, s.n, {x.index: x.score for x in s.samples})
            for c, s in zip(fresh.values(), scores)
        ]
        state.nodes.extend(nodes)
        return nodes

    def _select(self, state: SearchState, pool: list[Node]) -> None:
        sign = 1 if self.ctx.bridge.higher_is_better else -1
        # a stable sort keeps the earlier (incumbent) node first on ties
        ranked = sorted(pool, key=lambda n: -sign * n.dev)
        state.beam = [n.key for n in ranked[: self.beam_size]]

    def _record(self, state: SearchState, round_no: int, new: list[Node], previous_best: Node | None, start: RoundStart) -> dict:
        best = state.best
        seconds = time.time() - start.time
        target_seconds = self.ctx.bridge.target_seconds - start.target_seconds
        used = self.ctx.ledger.minus(start.ledger)
        return {
            "round": round_no,
            "candidates": [
                {"key": n.key[:12], "origin": n.candidate.origin, "parent": (n.candidate.parent or "")[:12] or None,
                 "dev": n.dev, **({"notes": n.candidate.notes} if n.candidate.notes else {})}
                for n in new
            ],
            "best": {"key": best.key, "dev": best.dev, "stderr": best.dev_stderr, "n": best.dev_n},
            "mean_dev": sum(n.dev for n in new) / len(new) if new else None,
            "flips": flips(previous_best, best) if previous_best else {"fixed": [], "broken": []},
            "optimizer": used.optimizer.to_dict(),
            "target": used.target.to_dict(),
            "seconds": round(seconds, 1),
            "target_seconds": round(target_seconds, 1),
            "optimizer_seconds": round(seconds - target_seconds, 1),
        }

    def run(self, rounds: int, state: SearchState | None, checkpoint, announce) -> SearchState:
        """Rounds up to `rounds` (round 0 scores the baseline and the initial candidates), resuming
        from `state` if given. A cap reached ends the search: round 0 still completes with the baseline;
        a later round is dropped and the last completed one stands."""
        ctx = self.ctx
        state = state or SearchState()
        ctx.ledger.load(state.ledger)  # a resumed run keeps what it spent
        state.ledger = ctx.ledger
        ctx.templates.update(state.templates)
        if self._stalled(state):  # a resumed run that had already converged stays stopped
            state.stopped = self._stall_reason()
            return state
        for round_no in range(state.round + 1, rounds + 1):
            start = RoundStart.of(ctx)
            previous_best = state.best if state.beam else None
            with tqdm(total=3, desc=f"round {round_no}/{rounds}", leave=False) as bar:
                try:
                    new = self._score_new(state, self._propose(state, round_no, bar), round_no)
                except BudgetExhausted as e:
                    state.stopped = str(e)
                    if round_no:
                        checkpoint(state, None)
                        break
                    new = self._score_new(state, [Candidate(ctx.bridge.default_prompt, "baseline")], 0, capped=False)
                bar.update(1)
            self._select(state, ([state.node(k) for k in state.beam] if state.beam else []) + new)
            state.round = round_no
            state.templates = sorted(ctx.templates)
            record = self._record(state, round_no, new, previous_best, start)
            state.trace.append(record)
            if not state.stopped and self._stalled(state):
                state.stopped = self._stall_reason()
            checkpoint(state, record)
            announce(record)
            if state.stopped:
                break
        return state

    def _propose(self, state: SearchState, round_no: int, bar) -> list[Candidate]:
        ctx = self.ctx
        if round_no == 0:
            candidates = [Candidate(ctx.bridge.default_prompt, "baseline")]
            bar.update(1)
            return candidates + self.method.initial(ctx, self.beam_size)
        beam = [state.node(k) for k in state.beam]
        reflected = [node for node in beam if self.method.uses_errors and self.method.wants_errors(node)]
        if reflected:
            self._score_train(reflected, round_no)
        bar.update(1)
        candidates = self.method.propose(ctx, beam, state.nodes, round_no)
        bar.update(1)
        return candidates

    def _score_train(self, beam: list[Node], round_no: int) -> None:
        pool = self.ctx.train_pool
        batch = self.ctx.rng("minibatch", round_no).sample(pool, min(self.minibatch, len(pool)))
        scores = self.ctx.bridge.score([n.prompt for n in beam], "train", batch)
        for node, score in zip(beam, scores):
            node.train_samples = score.samples

    def _stall_reason(self) -> str:
        return f"dev score did not improve for {self.patience} round(s)"

    def _stalled(self, state: SearchState) -> bool:
        if not self.patience or len(state.trace) <= self.patience:
            return False
        recent = [r["best"]["dev"] for r in state.trace[-(self.patience + 1) :]]
        return all(v == recent[0] for v in recent)

