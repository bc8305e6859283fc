"""Paired statistics of two prompts scored on the same examples: the difference with a paired bootstrap
interval, the exact McNemar test for 0/1 metrics, and the examples one prompt fixed and broke; Kendall's tau
between two scorings of the same items (rankings of models); and, for the studies, a two-sample permutation
test and a one-sided Fisher exact test."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import asdict, dataclass

BOOTSTRAP = 10_000
LEVEL = 0.95


def paired_interval(a: list[float], b: list[float], seed: int = 1234, iterations: int = BOOTSTRAP,
                    level: float = LEVEL) -> tuple[float, float]:
    """A percentile bootstrap interval of mean(b - a), resampling examples (pairs) with replacement."""
    diffs = [y - x for x, y in zip(a, b)]
    n = len(diffs)
    if n == 0:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(iterations))
    tail = (1 - level) / 2
    return means[int(tail * iterations)], means[min(iterations - 1, int((1 - tail) * iterations))]


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
    """The new prompt (b) against the baseline (a) on the same examples."""

    n: int
    baseline: float
    new: float
    difference: float
    interval: tuple[float, float]
    mcnemar_p: float | None  # for 0/1 metrics
    fixed: list[int]  # examples wrong under a, right under b
    broken: list[int]  # right under a, wrong under b

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (and, for 0/1 metrics, McNemar agrees at the same level)."""
        lo, hi = self.interval
        return (lo > 0 or hi < 0) and (self.mcnemar_p is None or self.mcnemar_p < 1 - LEVEL)

    def verdict(self, higher_is_better: bool = True) -> str:
        lo, hi = self.interval
        p = f", McNemar p={self.mcnemar_p:.3g}" if self.mcnemar_p is not None else ""
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


def compare(a: dict[int, float], b: dict[int, float], correct_a: dict[int, bool], correct_b: dict[int, bool],
            seed: int = 1234) -> Comparison:
    """Prompt b against prompt a, on the examples both were scored on (per-example values and
    correctness by example)."""
    common = sorted(a.keys() & b.keys())
    xs, ys = [a[i] for i in common], [b[i] for i in common]
    fixed = [i for i in common if correct_b[i] and not correct_a[i]]
    broken = [i for i in common if correct_a[i] and not correct_b[i]]
    n = len(common)
    return Comparison(
        n=n, baseline=sum(xs) / n if n else math.nan, new=sum(ys) / n if n else math.nan,
        difference=(sum(ys) - sum(xs)) / n if n else math.nan, interval=paired_interval(xs, ys, seed),
        mcnemar_p=mcnemar_exact(len(broken), len(fixed)) if is_binary(xs + ys) else None, fixed=fixed, broken=broken,
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
