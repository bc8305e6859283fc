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

from lm_eval_abo.cost.ledger import BudgetExhausted, Ledger
from lm_eval_abo.optimizers import selection
from lm_eval_abo.optimizers.base import Candidate, Context, Method, Node
from lm_eval_abo.optimizers.copying import Examples
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
    def __init__(self, method: Method, ctx: Context, beam_size: int, dev_indices: list[int], minibatch: int,
                 patience: int | None, accept: str = "score", alpha: float = 0.05, selection: str = "full",
                 no_copy: bool = True):
        self.method, self.ctx = method, ctx
        self.beam_size, self.dev_indices = beam_size, dev_indices
        self.minibatch, self.patience = minibatch, patience
        self.accept, self.alpha, self.selection, self.no_copy = accept, alpha, selection, no_copy
        self._examples: Examples | None = None

    def _copied(self, candidate: Candidate) -> str | None:
        """Why a proposed instruction or procedure copies the training questions, or None."""
        if self._examples is None:
            bridge = self.ctx.bridge
            docs = bridge.docs("train")
            allowed = "\n".join([self.ctx.task_description, bridge.answer_format, bridge.default_prompt.instruction_block()])
            self._examples = Examples([bridge.question(docs[i]) for i in self.ctx.train_pool], allowed)
        return self._examples.copied("\n".join([candidate.prompt.instruction, *candidate.prompt.procedure]))

    def _score_new(self, state: SearchState, candidates: list[Candidate], round_no: int, capped: bool = True) -> list[Node]:
        known = {n.key for n in state.nodes}
        fresh: dict[str, Candidate] = {}
        for c in candidates:
            empty = not (c.prompt.instruction.strip() or c.prompt.procedure) and c.origin != "baseline"
            if c.key in known or c.key in fresh or empty:
                continue
            copies = self._copied(c) if c.origin != "baseline" else None
            if copies and self.no_copy:
                self.ctx.drop(c, f"copies training content: {copies}")
                continue
            if copies:
                c.notes["copies"] = copies
            fresh[c.key] = c
        bridge, chosen = self.ctx.bridge, list(fresh.values())

        def score(group: list[Candidate], indices: list[int]):
            return bridge.score([c.prompt for c in group], "dev", indices, capped)

        if self.selection == "racing":
            scores = selection.race(chosen, score, self.dev_indices, self.beam_size, bridge.higher_is_better)
        else:
            scores = dict(enumerate(score(chosen, self.dev_indices)))
        nodes = []
        for i, c in enumerate(chosen):
            s = scores[i]
            if s.n < len(self.dev_indices):
                c.notes["raced_out"] = f"after {s.n} of {len(self.dev_indices)} dev examples"
            nodes.append(Node(c, round_no, s.value, s.stderr, s.n, {x.index: x.score for x in s.samples}))
        state.nodes.extend(nodes)
        return nodes

    def _select(self, state: SearchState, pool: list[Node], incumbent: Node | None) -> None:
        """The beam: the best fully scored prompts, the incumbent best first unless displaced by the rule."""
        sign = 1 if self.ctx.bridge.higher_is_better else -1
        complete = [n for n in pool if n.dev_n == len(self.dev_indices)]
        # a stable sort keeps the earlier (incumbent) node first on ties
        ranked = selection.accept(sorted(complete, key=lambda n: -sign * n.dev), incumbent, self.accept, self.alpha,
                                  self.ctx.bridge.higher_is_better)
        state.beam = [n.key for n in ranked[: self.beam_size]]

    def _record(self, state: SearchState, round_no: int, new: list[Node], incumbent: Node | None, start: RoundStart) -> dict:
        """The round as the trace keeps it (`incumbent`: the best before the round; in round 0 the baseline)."""
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
            "best": {"key": best.key, "dev": best.dev, "stderr": best.dev_stderr, "n": best.dev_n,
                     **self._gain(incumbent, best)},
            "mean_dev": sum(n.dev for n in new) / len(new) if new else None,
            **({"dropped": list(self.ctx.dropped)} if self.ctx.dropped else {}),
            **({"notes": dict(self.ctx.round_notes)} if self.ctx.round_notes else {}),
            "flips": flips(incumbent, best) if incumbent else {"fixed": [], "broken": []},
            "optimizer": used.optimizer.to_dict(),
            "target": used.target.to_dict(),
            "seconds": round(seconds, 1),
            "target_seconds": round(target_seconds, 1),
            "optimizer_seconds": round(seconds - target_seconds, 1),
        }

    def _gain(self, previous: Node | None, best: Node) -> dict:
        """A new best's dev gain over the one it displaced: its paired p-value, and whether that is within
        noise at the run's alpha (the report marks those)."""
        if previous is None or previous.key == best.key:
            return {}
        p = selection.gain_p(previous.dev_per_example, best.dev_per_example, self.ctx.bridge.higher_is_better)
        return {"gain_p": round(p, 6), "within_noise": p > self.alpha}

    def run(self, rounds: int, state: SearchState | None, checkpoint, announce, on_baseline=None) -> SearchState:
        """Rounds up to `rounds` (round 0 scores the baseline, hands its node to `on_baseline` before the
        first optimizer call, then scores the initial candidates), resuming from `state` if given. A cap
        reached ends the search: round 0 still completes with the baseline; a later round is dropped and
        the last completed one stands."""
        ctx = self.ctx
        state = state or SearchState()
        ctx.ledger.load(state.ledger)  # a resumed run keeps what it spent
        state.ledger = ctx.ledger
        ctx.templates.update(state.templates)
        if self._stalled(state):  # a resumed run that had already converged stays stopped
            state.stopped = self._stall_reason()
            return state
        for round_no in range(state.round + 1, rounds + 1):
            ctx.round, ctx.dropped, ctx.round_notes = round_no, [], {}
            start = RoundStart.of(ctx)
            previous_best = state.best if state.beam else None
            with tqdm(total=3, desc=f"round {round_no}/{rounds}", leave=False) as bar:
                baseline = self._baseline(state, bar, on_baseline) if round_no == 0 else []
                try:
                    new = baseline + self._score_new(state, self._propose(state, round_no, bar), round_no)
                except BudgetExhausted as e:
                    state.stopped = str(e)
                    if round_no:
                        checkpoint(state, None)
                        break
                    new = baseline
                bar.update(1)
            incumbent = previous_best or next((n for n in new if n.candidate.origin == "baseline"), None)
            self._select(state, ([state.node(k) for k in state.beam] if state.beam else []) + new, incumbent)
            state.round = round_no
            state.templates = sorted(ctx.templates)
            record = self._record(state, round_no, new, incumbent, start)
            state.trace.append(record)
            if not state.stopped and self._stalled(state):
                state.stopped = self._stall_reason()
            checkpoint(state, record)
            announce(record)
            if state.stopped:
                break
        return state

    def _baseline(self, state: SearchState, bar, on_baseline) -> list[Node]:
        """Round 0's first pass: the baseline on dev (always, whatever the caps: every run needs it)."""
        [node] = self._score_new(state, [Candidate(self.ctx.bridge.default_prompt, "baseline")], 0, capped=False)
        bar.update(1)
        if on_baseline:
            on_baseline(node)
        return [node]

    def _propose(self, state: SearchState, round_no: int, bar) -> list[Candidate]:
        ctx = self.ctx
        if round_no == 0:
            return self.method.initial(ctx, self.beam_size)
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

