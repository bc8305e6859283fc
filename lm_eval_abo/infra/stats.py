"""Paired statistics of two prompts scored on the same examples: the difference of their aggregated scores
with a paired bootstrap interval, the exact McNemar test for 0/1 metrics and a paired permutation test for
graded and corpus metrics, and the examples one prompt fixed and broke; Kendall's tau
between two scorings of the same items (rankings of models); and, for the studies, a two-sample permutation
test and a one-sided Fisher exact test."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

BOOTSTRAP = 10_000
CORPUS_BOOTSTRAP = 1_000  # resamples of a metric aggregated over the corpus (BLEU): each costs a full aggregation
LEVEL = 0.95


def _mean(values) -> float:
    return sum(values) / len(values)


def paired_interval(a: list, b: list, seed: int = 1234, iterations: int = BOOTSTRAP, level: float = LEVEL,
                    aggregate: Callable | None = None) -> tuple[float, float]:
    """A percentile bootstrap interval of aggregate(b) - aggregate(a), resampling examples (pairs) with
    replacement and aggregating each resample (`aggregate`: the metric's own over its per-example items,
    e.g. corpus BLEU; None: the mean of per-example values)."""
    n = len(a)
    if n == 0:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    if aggregate is None:
        diffs = [y - x for x, y in zip(a, b)]
        gaps = (sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(iterations))
    else:
        picks = ([rng.randrange(n) for _ in range(n)] for _ in range(iterations))
        gaps = (aggregate([b[i] for i in p]) - aggregate([a[i] for i in p]) for p in picks)
    found = sorted(gaps)
    tail = (1 - level) / 2
    return float(found[int(tail * iterations)]), float(found[min(iterations - 1, int((1 - tail) * iterations))])


def paired_permutation(a: list, b: list, seed: int = 1234, iterations: int = BOOTSTRAP,
                       aggregate: Callable | None = None) -> float:
    """Two-sided p-value of aggregate(b) - aggregate(a) under the null that each example's two results are
    exchangeable: every assignment of the pairs' sides when there are at most `iterations` (exact), else
    `iterations` seeded random ones (each pair swapped with probability 1/2)."""
    n, aggregate = len(a), aggregate or _mean
    if n == 0:
        return 1.0

    def gap(swaps) -> float:
        xs = [y if s else x for x, y, s in zip(a, b, swaps)]
        ys = [x if s else y for x, y, s in zip(a, b, swaps)]
        return abs(aggregate(ys) - aggregate(xs))

    observed = gap([False] * n) - 1e-12
    if 2**n <= iterations:
        gaps = [gap(swaps) for swaps in itertools.product((False, True), repeat=n)]  # includes the observed
        return sum(g >= observed for g in gaps) / len(gaps)
    rng = random.Random(seed)
    extreme = sum(gap([rng.random() < 0.5 for _ in range(n)]) >= observed for _ in range(iterations))
    return (1 + extreme) / (1 + iterations)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: examples right under a only, under b only."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def is_binary(values) -> bool:
    return all(v in (0, 1) for v in values)


@dataclass
class Comparison:
    """The new prompt (b) against the baseline (a) on the same examples, each side aggregated as the task
    aggregates its metric, so `difference` is the difference of the two scores lm-eval reports."""

    n: int
    baseline: float
    new: float
    difference: float
    interval: tuple[float, float]  # paired bootstrap, resampling examples and re-aggregating
    mcnemar_p: float | None  # exact McNemar, for 0/1 metrics averaged
    fixed: list[int]  # examples wrong under a, right under b
    broken: list[int]  # right under a, wrong under b
    permutation_p: float | None = None  # paired permutation test, for graded and corpus metrics

    @property
    def p(self) -> float:
        return self.mcnemar_p if self.mcnemar_p is not None else self.permutation_p

    @property
    def significant(self) -> bool:
        """The interval excludes 0 and the paired test agrees at the same level (McNemar for 0/1 metrics, the
        paired permutation test for the others)."""
        lo, hi = self.interval
        return (lo > 0 or hi < 0) and (self.p is None or self.p < 1 - LEVEL)

    def verdict(self, higher_is_better: bool = True) -> str:
        lo, hi = self.interval
        test = "McNemar" if self.mcnemar_p is not None else "paired permutation"
        p = f", {test} p={self.p:.3g}" if self.p is not None else ""
        if not self.significant:
            # both tests must agree, so the line shows both: an interval clear of 0 with few changed examples
            # still reads "no difference" and the p says why
            return f"no difference from the baseline that the test set can show (n={self.n}, {self.difference:+.3f}, " \
                   f"95% CI {lo:+.3f} to {hi:+.3f}{p})"
        better = (self.difference > 0) == higher_is_better
        return f"{self.difference:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}{p}, n={self.n}): " + \
               ("better than the baseline" if better else "worse than the baseline")

    def to_dict(self) -> dict:
        return {**asdict(self), "interval": list(self.interval), "significant": self.significant}


def compare(a: dict[int, object], b: dict[int, object], correct_a: dict[int, bool] | None = None,
            correct_b: dict[int, bool] | None = None, seed: int = 1234,
            aggregate: Callable | None = None) -> Comparison:
    """Prompt b against prompt a, on the examples both were scored on: per-example items (the metric's values,
    or for a corpus metric the items its `aggregate` takes) and whether each is right, by example (None: a
    0/1 metric's value; the examples of another metric are then neither fixed nor broken). Each side is
    aggregated over the common examples; the bootstrap and the permutation test re-aggregate."""
    common = sorted(a.keys() & b.keys())
    xs, ys = ([side[i] if aggregate else float(side[i]) for i in common] for side in (a, b))
    binary = aggregate is None and is_binary(xs + ys)
    if correct_a is None or correct_b is None:  # from a 0/1 metric's values; for another, none fixed or broken
        correct_a, correct_b = ({i: v[i] == 1 for i in common} for v in (a, b)) if binary else ({}, {})
    fixed = [i for i in common if correct_b.get(i, False) and not correct_a.get(i, True)]
    broken = [i for i in common if correct_a.get(i, False) and not correct_b.get(i, True)]
    n = len(common)
    whole = aggregate or _mean
    iterations = BOOTSTRAP if aggregate is None else CORPUS_BOOTSTRAP
    baseline, new = (float(whole(xs)), float(whole(ys))) if n else (math.nan, math.nan)
    return Comparison(
        n=n, baseline=baseline, new=new, difference=new - baseline,
        interval=paired_interval(xs, ys, seed, iterations, aggregate=aggregate),
        mcnemar_p=mcnemar_exact(len(broken), len(fixed)) if binary else None, fixed=fixed, broken=broken,
        permutation_p=None if binary or not n else paired_permutation(xs, ys, seed, iterations, aggregate),
    )


def smallest_gain(n: int, alpha: float = 1 - LEVEL, two_sided: bool = True) -> float | None:
    """The smallest gain of a 0/1 metric that an exact paired test on n examples can show at `alpha`: k/n,
    for the fewest changed examples k that reach p <= alpha when every one of them is fixed (two-sided
    McNemar: 2 * 0.5**k; one-sided sign test: 0.5**k). None when even n changed examples cannot."""
    k = 1
    while (2 if two_sided else 1) * 0.5**k > alpha:
        k += 1
    return k / n if 0 < k <= n else None


def sign_test(a: list[float], b: list[float]) -> float:
    """One-sided exact sign test that b is better than a on paired examples (ties dropped); for 0/1
    metrics it is the exact one-sided McNemar test."""
    wins = sum(y > x for x, y in zip(a, b))
    losses = sum(y < x for x, y in zip(a, b))
    n = wins + losses
    return sum(math.comb(n, i) for i in range(wins, n + 1)) / 2**n if n else 1.0


def permutation_test(a: list[float], b: list[float], seed: int = 1234, iterations: int = BOOTSTRAP,
                     level: float = LEVEL) -> tuple[float, float]:
    """Two-sample permutation test of mean(a) - mean(b): (the `level` quantile of |difference| when the
    pooled values are split at random into groups of the same sizes, two-sided p-value). Every split is
    tried when there are at most `iterations`; else `iterations` seeded random ones."""
    pooled, n = a + b, len(a)
    if not a or not b:
        return (math.nan, math.nan)
    total, m = sum(pooled), len(b)

    def gap(group) -> float:
        inside = sum(pooled[i] for i in group)
        return abs(inside / n - (total - inside) / m)

    observed = abs(sum(a) / n - sum(b) / m)
    if math.comb(n + m, n) <= iterations:
        gaps = [gap(g) for g in itertools.combinations(range(n + m), n)]  # includes the observed split
        extreme = sum(g >= observed - 1e-12 for g in gaps) / len(gaps)
    else:
        rng = random.Random(seed)
        gaps = [gap(rng.sample(range(n + m), n)) for _ in range(iterations)]
        extreme = (1 + sum(g >= observed - 1e-12 for g in gaps)) / (1 + iterations)
    gaps.sort()
    return gaps[min(len(gaps) - 1, int(level * len(gaps)))], extreme


def fisher_greater(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """One-sided Fisher exact p-value that group a's rate of hits exceeds group b's."""
    if not n_a or not n_b:
        return 1.0
    hits, n = hits_a + hits_b, n_a + n_b
    return sum(math.comb(hits, x) * math.comb(n - hits, n_a - x) for x in range(hits_a, min(hits, n_a) + 1)) / math.comb(n, n_a)


def kendall_tau(xs: list[float], ys: list[float]) -> float | None:
    """Kendall's tau-b of two scorings of the same items (ties allowed): (concordant - discordant pairs) over
    the square root of the pairs untied in x times those untied in y. None where either scoring ties every
    pair (no order to compare)."""
    concordant = discordant = untied_x = untied_y = 0
    for i, j in itertools.combinations(range(len(xs)), 2):
        dx, dy = xs[i] - xs[j], ys[i] - ys[j]
        untied_x += dx != 0
        untied_y += dy != 0
        concordant += dx * dy > 0
        discordant += dx * dy < 0
    if not untied_x or not untied_y:
        return None
    return (concordant - discordant) / math.sqrt(untied_x * untied_y)
