"""The one search loop every method runs in: propose, score through lm-eval, select, record.

The loop owns the run: it scores the baseline and every candidate on dev (`dev_scoring`), the beam's train
minibatches the method asks for, filters copies of training content, keeps the beam (`acceptance`),
records each round, checks the budget before a method proposes, and stops (`stop`). A method only
proposes: it gets the task through a narrow view, the optimizer through one recorded path, and returns
a `Proposal`.

Split discipline: reflections see train errors only, selection sees dev scores only; the test split is
not reachable from here (the bridge refuses it). After every completed round the state is handed to
`checkpoint`, so a crashed run resumes from its last completed round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from tqdm import tqdm

from lm_eval_abo.cost.ledger import BudgetExhausted, Ledger
from lm_eval_abo.optimizers import selection
from lm_eval_abo.optimizers.base import Candidate, Context, Dropped, Method, Node, Proposal, Round
from lm_eval_abo.optimizers.copying import Examples
from lm_eval_abo.optimizers.result import BestRecord, CandidateRecord, RoundRecord, SearchState


def flips(before: Node, after: Node) -> dict[str, list[int]]:
    """Dev examples the new best fixed and broke, compared with the previous best."""
    common = before.dev_per_example.keys() & after.dev_per_example.keys()
    return {
        "fixed": sorted(i for i in common if after.dev_per_example[i] > before.dev_per_example[i]),
        "broken": sorted(i for i in common if after.dev_per_example[i] < before.dev_per_example[i]),
    }


class Metered:
    """The task as methods see it, with the target requests of their own scoring counted (they reach the
    round's record; the ledger counts every request anyway)."""

    def __init__(self, task, ledger: Ledger):
        self._task, self._ledger = task, ledger
        self.requests = 0

    def score(self, prompts, split: str, indices: list[int]):
        before = self._ledger.target.calls
        try:
            return self._task.score(prompts, split, indices)
        finally:
            self.requests += self._ledger.target.calls - before

    def __getattr__(self, name):
        return getattr(self._task, name)


@dataclass(frozen=True)
class RoundStart:
    """The counters when a round starts; the round's record shows what it used since."""

    time: float
    ledger: Ledger
    target_seconds: float
    method_requests: int


class Search:
    def __init__(self, method: Method, ctx: Context, *, bridge, ledger: Ledger, beam: int, minibatch: int, stop,
                 dev_scoring=None, acceptance=None, alpha: float = 0.05, no_copy: bool = True):
        """`bridge`: the task as the loop scores it (lm-eval, under the budget); `ledger`: the live counts of
        both models; `stop`, `dev_scoring`, `acceptance`: strategies (`stopping`, `selection`); `alpha`: the
        level of the within-noise marks of the round records."""
        self.method, self.bridge, self.ledger = method, bridge, ledger
        self.metered = Metered(ctx.task, ledger)
        self.ctx = replace(ctx, task=self.metered)
        self.beam_size, self.dev_indices, self.minibatch = beam, ctx.dev_indices, minibatch
        self.stop, self.alpha, self.no_copy = stop, alpha, no_copy
        self.dev_scoring = dev_scoring or selection.FullDev()
        self.acceptance = acceptance or selection.ByScore()
        self._examples: Examples | None = None

    def _copied(self, candidate: Candidate) -> str | None:
        """Why a proposed instruction or procedure copies the training questions, or None."""
        if self._examples is None:
            task = self.bridge
            docs = task.docs("train")
            allowed = "\n".join([task.task_description, task.answer_format, task.default_prompt.instruction_block()])
            self._examples = Examples([task.question(docs[i]) for i in self.ctx.train_pool], allowed)
        return self._examples.copied("\n".join([candidate.prompt.instruction, *candidate.prompt.procedure]))

    def _score_new(self, state: SearchState, candidates: list[Candidate], round_no: int, dropped: list[Dropped],
                   capped: bool = True) -> list[Node]:
        known = {n.key for n in state.nodes}
        fresh: dict[str, Candidate] = {}
        for c in candidates:
            empty = not (c.prompt.instruction.strip() or c.prompt.procedure) and c.origin != "baseline"
            if c.key in known or c.key in fresh or empty:
                continue
            copies = self._copied(c) if c.origin != "baseline" else None
            if copies and self.no_copy:
                dropped.append(Dropped.of(c, f"copies training content: {copies}"))
                continue
            if copies:
                c.notes["copies"] = copies
            fresh[c.key] = c
        chosen = list(fresh.values())

        def score(group: list[Candidate], indices: list[int]):
            return self.bridge.score([c.prompt for c in group], "dev", indices, capped)

        scores = self.dev_scoring.score(chosen, score, self.dev_indices, self.beam_size, self.bridge.higher_is_better,
                                        round_no)
        nodes = []
        for i, c in enumerate(chosen):
            s = scores[i]
            if s.n < len(self.dev_indices):
                c.notes["raced_out"] = f"after {s.n} of {len(self.dev_indices)} dev examples"
            nodes.append(Node(c, round_no, s.value, s.stderr, s.n, selection.per_example(s)))
        state.nodes.extend(nodes)
        return nodes

    def _select(self, state: SearchState, pool: list[Node], incumbent: Node | None) -> None:
        """The beam: the best fully scored prompts, the incumbent best first unless displaced by the rule."""
        sign = 1 if self.bridge.higher_is_better else -1
        complete = [n for n in pool if n.dev_n == len(self.dev_indices)]
        # a stable sort keeps the earlier (incumbent) node first on ties
        ranked = self.acceptance.order(sorted(complete, key=lambda n: -sign * n.dev), incumbent,
                                       self.bridge.higher_is_better)
        state.beam = [n.key for n in ranked[: self.beam_size]]

    def _record(self, state: SearchState, round_no: int, new: list[Node], incumbent: Node | None, start: RoundStart,
                proposal: Proposal, dropped: list[Dropped]) -> RoundRecord:
        """The round as the trace keeps it (`incumbent`: the best before the round; in round 0 the baseline)."""
        best = state.best
        seconds = time.time() - start.time
        target_seconds = self.bridge.target_seconds - start.target_seconds
        used = self.ledger.minus(start.ledger)
        return RoundRecord(
            round=round_no, candidates=tuple(CandidateRecord.of(n) for n in new),
            best=BestRecord(best.key, best.dev, best.dev_stderr, best.dev_n, **self._gain(incumbent, best, new)),
            mean_dev=sum(n.dev for n in new) / len(new) if new else None,
            flips=flips(incumbent, best) if incumbent else {"fixed": [], "broken": []},
            optimizer=used.optimizer, target=used.target, grader=used.grader, seconds=round(seconds, 1),
            target_seconds=round(target_seconds, 1), optimizer_seconds=round(seconds - target_seconds, 1),
            dropped=tuple(dropped), notes=dict(proposal.notes),
            method_requests=self.metered.requests - start.method_requests,
        )

    def _gain(self, previous: Node | None, best: Node, new: list[Node]) -> dict:
        """A new best's dev gain over the one it displaced: its paired p-value, the number of the round's
        candidates it was the highest of, and whether the gain is within noise at the run's alpha once
        corrected for that selection (`selection.noise`; the report marks those)."""
        if previous is None or previous.key == best.key:
            return {}
        p = selection.gain_p(previous.dev_per_example, best.dev_per_example, self.bridge.higher_is_better)
        compared = sum(n.key != previous.key for n in new)
        adjusted, within = selection.noise(p, compared, self.alpha)
        return {"gain_p": round(p, 6), "compared": compared, "gain_p_adjusted": round(adjusted, 6), "within_noise": within}

    def run(self, state: SearchState | None, checkpoint, announce, on_baseline=None) -> SearchState:
        """Rounds until `stop` says so (round 0 scores the baseline, hands its node to `on_baseline` before
        the first optimizer call, then scores the initial candidates), resuming from `state` if given. A cap
        reached ends the search: round 0 still completes with the baseline; a later round is dropped and
        the last completed one stands."""
        state = state or SearchState()
        self.ledger.load(state.ledger)  # a resumed run keeps what it spent
        state.ledger = self.ledger
        self.ctx.calls.templates.update(state.templates)
        stop = self.stop.check(state)  # a resumed run that had already converged stays stopped
        while stop is None:
            round_no = state.round + 1
            self.ctx.calls.round = round_no
            start = RoundStart(time.time(), self.ledger.snapshot(), self.bridge.target_seconds, self.metered.requests)
            previous_best = state.best if state.beam else None
            proposal, dropped = Proposal(), []
            with tqdm(total=3, desc=f"round {round_no}", leave=False) as bar:
                baseline = self._baseline(state, bar, on_baseline, dropped) if round_no == 0 else []
                try:
                    proposal = self._propose(state, round_no, bar)
                    dropped[:0] = proposal.dropped  # the method's own first, then the loop's
                    new = baseline + self._score_new(state, proposal.candidates, round_no, dropped)
                except BudgetExhausted as e:
                    state.stopped = str(e)
                    if round_no:
                        checkpoint(state, None)
                        break
                    new = baseline
                bar.update(1)
            if proposal.state is not None:
                state.method_state = proposal.state
            incumbent = previous_best or next((n for n in new if n.candidate.origin == "baseline"), None)
            self._select(state, ([state.node(k) for k in state.beam] if state.beam else []) + new, incumbent)
            state.round = round_no
            state.templates = sorted(self.ctx.calls.templates)
            record = self._record(state, round_no, new, incumbent, start, proposal, dropped)
            state.trace.append(record)
            stop = self.stop.check(state)
            if stop and stop.early and not state.stopped:
                state.stopped = stop.reason
            if proposal.finished and not state.stopped:
                state.stopped = proposal.finished
            checkpoint(state, record)
            announce(record)
            if state.stopped:
                break
        if stop and stop.early and not state.stopped:
            state.stopped = stop.reason
        return state

    def _baseline(self, state: SearchState, bar, on_baseline, dropped: list[Dropped]) -> list[Node]:
        """Round 0's first pass: the baseline on dev (always, whatever the caps: every run needs it)."""
        [node] = self._score_new(state, [Candidate(self.bridge.default_prompt, "baseline")], 0, dropped, capped=False)
        bar.update(1)
        if on_baseline:
            on_baseline(node)
        return [node]

    def _propose(self, state: SearchState, round_no: int, bar) -> Proposal:
        if round_no == 0:
            return self.method.initial(self.ctx, self.beam_size)
        beam = [state.node(k) for k in state.beam]
        wanted = [node for node in beam if self.method.wants_errors(node)]
        train = self._score_train(wanted, round_no) if wanted else {}
        bar.update(1)
        refused = self.ctx.calls.refused()  # the loop's check, before the method asks anything
        if refused:
            raise BudgetExhausted(refused)
        proposal = self.method.propose(self.ctx, Round(round_no, beam, list(state.nodes), train, dict(state.method_state)))
        bar.update(1)
        return proposal

    def _score_train(self, beam: list[Node], round_no: int) -> dict:
        pool = self.ctx.train_pool
        batch = self.ctx.rng("minibatch", round_no).sample(pool, min(self.minibatch, len(pool)))
        scores = self.bridge.score([n.prompt for n in beam], "train", batch)
        return {node.key: score.samples for node, score in zip(beam, scores)}
