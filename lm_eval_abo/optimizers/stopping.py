"""When the search stops, each condition a small object that says why (`Stop`): after its last round
(`MaxRounds`), after rounds without a better dev score (`Patience`), or at the first of several (`AnyOf`).
A budget cap stops it too, but that is the budget's (`cost.ledger.BudgetExhausted`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stop:
    reason: str
    early: bool  # before the rounds it was given (the run reports it, and `--resume` goes on)


@dataclass(frozen=True)
class MaxRounds:
    rounds: int

    def check(self, state) -> Stop | None:
        return Stop(f"ran its {self.rounds} round(s)", early=False) if state.round >= self.rounds else None


@dataclass(frozen=True)
class Patience:
    """Stop once the best dev score has stayed the same for `rounds` rounds (0: never)."""

    rounds: int | None

    def check(self, state) -> Stop | None:
        if not self.rounds or len(state.trace) <= self.rounds:
            return None
        recent = [r.best.dev for r in state.trace[-(self.rounds + 1):]]
        if all(v == recent[0] for v in recent):
            return Stop(f"dev score did not improve for {self.rounds} round(s)", early=True)
        return None


@dataclass(frozen=True)
class AnyOf:
    """The first of `stops` that fires, in order."""

    stops: tuple

    def check(self, state) -> Stop | None:
        return next((stop for s in self.stops if (stop := s.check(state))), None)
