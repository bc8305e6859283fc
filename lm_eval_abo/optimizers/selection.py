"""How the search picks from a round's candidates.

Which dev examples a candidate is scored on: all of them (`full`), or a race (`racing`, successive
halving, one of the bandit selections of ProTeGi): every candidate is scored on a first slice of dev, the
better half goes on to a slice twice as large, and so on; the survivors are scored on all of dev, so the final
choice still rests on every dev example. A candidate dropped on the way keeps its partial score and never
enters the beam.

When a new prompt displaces the incumbent best: when it scores higher on dev (`score`), or only when it
is better on a paired test over the same dev examples (`paired`: the one-sided exact sign test, which is
McNemar's for 0/1 metrics, at level `alpha`).
"""

from __future__ import annotations

from lm_eval_abo import stats

ACCEPT = ("paired", "score")
SELECTION = ("full", "racing")
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


def accept(ranked: list, incumbent, rule: str, alpha: float, higher_is_better: bool) -> list:
    """`ranked` (best first), with the incumbent kept first unless the rule lets the leader displace it."""
    if rule == "score" or incumbent is None or ranked[0] is incumbent:
        return ranked
    if gain_p(incumbent.dev_per_example, ranked[0].dev_per_example, higher_is_better) <= alpha:
        return ranked
    return [incumbent, *(n for n in ranked if n is not incumbent)]
