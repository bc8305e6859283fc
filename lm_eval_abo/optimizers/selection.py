"""How the search picks from a round's candidates.

Which dev examples a candidate is scored on: all of them (`full`), or a race (`racing`, one of the bandit
selections of ProTeGi): every candidate is scored on a first slice of dev, the slice doubles, and so on;
the survivors are scored on all of dev, so the final choice still rests on every dev example. Each round
draws its own slices: a seeded random order of the dev examples (from the run's seed and the round number,
so a resumed run draws the same), each slice a prefix of it. After each slice a candidate is dropped
only when it is behind the slice's leader on a paired test over the slice (the one-sided exact sign test,
McNemar's for 0/1 metrics) at `alpha / ((K - 1) * S)`, for K candidates and S slices before all of dev:
a union bound over the comparisons the best candidate can lose, so a candidate whose true score is the
highest is dropped with probability at most `alpha` (--race-alpha, default 0.05). Ties (for the leader,
and for which candidates to drop when the beam needs some kept) are broken at random, seeded the same
way. A dropped candidate keeps its partial score and never enters the beam.

When a new prompt displaces the incumbent best: when it scores higher on dev (`score`), or only when it
is better on a paired test over the same dev examples (`paired`: the one-sided exact sign test, which is
McNemar's for 0/1 metrics, at level `alpha`; uncorrected for the leader being the highest of the pool, which
the within-noise mark below accounts for).

Whether a new best's dev gain is within noise (`noise`): the new best is the highest of the round's m
candidates, so its paired p-value is Bonferroni-corrected, `min(1, m * p)`, before it meets `alpha`.

Each is a small strategy object the loop is given (`FullDev`, `Racing`; `ByScore`, `Paired`); the run maps
the --selection and --accept flags to them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from lm_eval_abo.infra import stats

# A race's first slice: an eighth of dev, at least 3 examples (bench/selection.py measures what racing saves
# and how often it drops the truly best candidate).
FIRST_SLICE, FIRST_FRACTION = 3, 8
RACE_ALPHA = 0.05


def slices(n: int) -> list[int]:
    """A race's growing slices of n dev examples: the first slice, doubling, then all."""
    size = min(n, max(FIRST_SLICE, -(-n // FIRST_FRACTION)))
    out = []
    while size < n:
        out.append(size)
        size *= 2
    return out + [n]


def per_example(score) -> dict[int | str, float]:
    """A score's per-example values, keyed to pair with another prompt's (`Sample.key`: the example, and the
    model in a run with several targets)."""
    return {s.key: s.score for s in score.samples}


def race(candidates: list, score, dev_indices: list[int], keep: int, higher_is_better: bool,
         alpha: float = RACE_ALPHA, rng: random.Random | None = None) -> dict:
    """The race over `candidates` (see the module's doc); `score(candidates, indices)` scores them on those
    dev examples; `rng` draws the slices and breaks ties. Returns each candidate's last score (on all of dev
    for the survivors), by position."""
    if not candidates:
        return {}
    rng = rng or random.Random(0)
    order = rng.sample(list(dev_indices), len(dev_indices))
    tiebreak = [rng.random() for _ in candidates]
    sizes = slices(len(dev_indices))
    level = alpha / (max(1, len(candidates) - 1) * max(1, len(sizes) - 1))
    sign = 1 if higher_is_better else -1
    alive, last = list(range(len(candidates))), {}
    for size in sizes:
        for i, result in zip(alive, score([candidates[i] for i in alive], sorted(order[:size]))):
            last[i] = result
        if size == len(dev_indices):
            break
        leader = min(alive, key=lambda i: (-sign * last[i].value, tiebreak[i]))
        p = {i: gain_p(per_example(last[i]), per_example(last[leader]), higher_is_better) for i in alive if i != leader}
        behind = sorted((i for i in p if p[i] <= level), key=lambda i: (p[i], tiebreak[i]))
        dropped = set(behind[: max(0, len(alive) - keep)])  # never fewer than the beam needs
        alive = [i for i in alive if i not in dropped]
    return last


def gain_p(before: dict[int, float], after: dict[int, float], higher_is_better: bool) -> float:
    """p-value of `after` being better than `before` on the dev examples both were scored on."""
    common = sorted(before.keys() & after.keys())
    a, b = [before[i] for i in common], [after[i] for i in common]
    return stats.sign_test(a, b) if higher_is_better else stats.sign_test(b, a)


def noise(p: float, compared: int, alpha: float) -> tuple[float, bool]:
    """A new best's gain p-value corrected for being the highest of `compared` candidates (Bonferroni:
    min(1, compared * p)), and whether the gain is within noise at `alpha`."""
    adjusted = min(1.0, max(1, compared) * p)
    return adjusted, adjusted > alpha


# --- how a round's candidates are scored on dev -------------------------------------------------------


class FullDev:
    """Every candidate on all of dev."""

    def score(self, candidates: list, score: Callable, dev_indices: list[int], keep: int, higher_is_better: bool,
              round_no: int = 0) -> dict:
        """Each candidate's score by position; `score(candidates, indices)` scores them on those dev examples."""
        return dict(enumerate(score(candidates, dev_indices)))


@dataclass(frozen=True)
class Racing:
    """The race (`race`) at level `alpha`, its slices and ties drawn from `seed` and the round number."""

    alpha: float = RACE_ALPHA
    seed: int = 0

    def score(self, candidates: list, score: Callable, dev_indices: list[int], keep: int, higher_is_better: bool,
              round_no: int = 0) -> dict:
        rng = random.Random(f"{self.seed}:race:{round_no}")
        return race(candidates, score, dev_indices, keep, higher_is_better, self.alpha, rng)


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

