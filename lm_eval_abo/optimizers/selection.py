"""How the search picks from a round's candidates.

Which dev examples a candidate is scored on: all of them (`full`), or a race (`racing`, successive
halving, one of the bandit selections of ProTeGi): every candidate is scored on a first slice of dev, the
better half goes on to a slice twice as large, and so on; the survivors are scored on all of dev, so the final
choice still rests on every dev example. A candidate dropped on the way keeps its partial score and never
enters the beam.

When a new prompt displaces the incumbent best: when it scores higher on dev (`score`), or only when it
is better on a paired test over the same dev examples (`paired`: the one-sided exact sign test, which is
McNemar's for 0/1 metrics, at level `alpha`).

Each is a small strategy object the loop is given (`FullDev`, `Racing`; `ByScore`, `Paired`); the run maps
the --selection and --accept flags to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lm_eval_abo.infra import stats

# A race's first slice: an eighth of dev, at least 3 examples (bench/selection.py: on a simulated target,
# 2.2x fewer requests at 50 dev examples and 2.6x at 100, the winner the same or within noise in >= 99.8%
# of rounds; a quarter saved 1.8x and 2.0x).
FIRST_SLICE, FIRST_FRACTION = 3, 8


def slices(n: int) -> list[int]:
    """A race's growing slices of n dev examples: the first slice, doubling, then all."""
    size = min(n, max(FIRST_SLICE, -(-n // FIRST_FRACTION)))
    out = []
    while size < n:
        out.append(size)
        size *= 2
    return out + [n]


def race(candidates: list, score, dev_indices: list[int], keep: int, higher_is_better: bool) -> dict:
    """Successive halving over `candidates`; `score(candidates, indices)` scores them on those dev examples.
    Returns each candidate's last score (on all of dev for the survivors), by position."""
    sign = 1 if higher_is_better else -1
    alive, last = list(range(len(candidates))), {}
    for size in slices(len(dev_indices)):
        for i, result in zip(alive, score([candidates[i] for i in alive], dev_indices[:size])):
            last[i] = result
        if size == len(dev_indices):
            break
        # the better half goes on (never fewer than the beam needs); ties keep the earlier candidate
        alive = sorted(alive, key=lambda i: -sign * last[i].value)[: max(keep, -(-len(alive) // 2))]
    return last


def gain_p(before: dict[int, float], after: dict[int, float], higher_is_better: bool) -> float:
    """p-value of `after` being better than `before` on the dev examples both were scored on."""
    common = sorted(before.keys() & after.keys())
    a, b = [before[i] for i in common], [after[i] for i in common]
    return stats.sign_test(a, b) if higher_is_better else stats.sign_test(b, a)


# --- how a round's candidates are scored on dev -------------------------------------------------------


class FullDev:
    """Every candidate on all of dev."""

    def score(self, candidates: list, score: Callable, dev_indices: list[int], keep: int, higher_is_better: bool) -> dict:
        """Each candidate's score by position; `score(candidates, indices)` scores them on those dev examples."""
        return dict(enumerate(score(candidates, dev_indices)))


class Racing:
    """Successive halving (`race`): the survivors on all of dev, the others on the slice they left at."""

    def score(self, candidates: list, score: Callable, dev_indices: list[int], keep: int, higher_is_better: bool) -> dict:
        return race(candidates, score, dev_indices, keep, higher_is_better)


# --- when a new prompt displaces the best -------------------------------------------------------------


class ByScore:
    """Any higher dev score displaces the best (ties keep the earlier: the incumbent)."""

    def order(self, ranked: list, incumbent, higher_is_better: bool) -> list:
        return ranked


@dataclass(frozen=True)
class Paired:
    """The leader displaces the incumbent only when it is better on a paired test over the same dev
    examples at level `alpha`."""

    alpha: float

    def order(self, ranked: list, incumbent, higher_is_better: bool) -> list:
        """`ranked` (best first), with the incumbent kept first unless the leader's gain over it is significant."""
        if incumbent is None or ranked[0] is incumbent:
            return ranked
        if gain_p(incumbent.dev_per_example, ranked[0].dev_per_example, higher_is_better) <= self.alpha:
            return ranked
        return [incumbent, *(n for n in ranked if n is not incumbent)]

