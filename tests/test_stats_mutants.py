"""infra/stats.py against scipy's implementations and hand-derived values, case by case where the
package's own tests leave a changed operator or constant unnoticed (bench/mutation.py measures which)."""

import itertools
import math

import numpy
import pytest
from scipy.stats import fisher_exact, kendalltau, permutation_test

from lm_eval_abo.infra import stats


@pytest.mark.parametrize("xs, ys", [
    ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]),
    ([0.2, 0.2, 0.5, 0.9, 0.1], [1, 0, 1, 1, 0]),  # ties in both
    ([3, 1, 2, 2, 5, 4], [0.3, 0.1, 0.1, 0.4, 0.2, 0.9]),
    ([1, 2, 3], [3, 2, 1]),
])
def test_kendall_tau_is_scipys_tau_b(xs, ys):
    assert stats.kendall_tau(xs, ys) == pytest.approx(kendalltau(xs, ys).statistic)


def test_kendall_tau_is_none_only_when_a_side_ties_every_pair():
    assert stats.kendall_tau([1, 1, 1], [1, 2, 3]) is None and stats.kendall_tau([1, 2, 3], [4, 4, 4]) is None
    assert stats.kendall_tau([1, 2], [1, 2]) == 1.0


@pytest.mark.parametrize("table", [(5, 6, 1, 8), (3, 3, 0, 4), (2, 5, 2, 5), (0, 4, 3, 3), (4, 9, 1, 2), (6, 6, 6, 6)])
def test_fisher_greater_is_scipys_one_sided_fisher_test(table):
    hits_a, n_a, hits_b, n_b = table
    expected = fisher_exact([[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]], alternative="greater").pvalue
    assert stats.fisher_greater(*table) == pytest.approx(expected)


def test_fisher_greater_of_an_empty_group_is_one():
    assert stats.fisher_greater(0, 0, 3, 5) == 1.0 and stats.fisher_greater(2, 4, 0, 0) == 1.0


def every_split(a, b, level):
    """The permutation test by enumeration with scipy: its exact null distribution of |mean difference|."""
    result = permutation_test((a, b), lambda x, y: abs(numpy.mean(x) - numpy.mean(y)), permutation_type="independent",
                              n_resamples=math.inf, alternative="greater")
    null = sorted(result.null_distribution)
    return null[min(len(null) - 1, int(level * len(null)))], result.pvalue


@pytest.mark.parametrize("a, b", [
    ([1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0, 0.0]),  # unequal sizes
    ([0.9, 0.4, 0.7, 0.8], [0.1, 0.5, 0.2]),
    ([0.3, 0.5], [0.4, 0.4]),
])
def test_the_exact_permutation_test_is_scipys(a, b):
    floor, p = stats.permutation_test(a, b)
    expected_floor, expected_p = every_split(a, b, 0.95)
    assert p == pytest.approx(expected_p) and floor == pytest.approx(expected_floor)
    assert stats.permutation_test(a, b, level=0.5)[0] == pytest.approx(every_split(a, b, 0.5)[0])


def test_sampled_permutations_count_the_observed_split_once():
    # every split of equal values is as extreme as the observed one: (1 + 200) / (1 + 200)
    assert stats.permutation_test([0.5] * 30, [0.5] * 30, iterations=200) == (0.0, 1.0)
    # 1 - 0 is the largest gap there is; a random split reaches it with odds 2 / C(60, 30): never in 200 draws
    floor, p = stats.permutation_test([1.0] * 30, [0.0] * 30, iterations=200)
    assert p == pytest.approx(1 / 201)
    assert stats.permutation_test([1.0] * 30, [0.0] * 30, iterations=200, seed=9)[1] == p
    assert math.isnan(stats.permutation_test([], [1.0])[1]) and math.isnan(stats.permutation_test([1.0], [])[0])


def test_a_paired_interval_of_identical_differences_is_that_difference():
    assert stats.paired_interval([0.0, 0.5, 1.0], [0.25, 0.75, 1.25]) == (0.25, 0.25)
    assert all(math.isnan(x) for x in stats.paired_interval([], []))


def bootstrap_quantiles(diffs, level):
    """The exact bootstrap distribution of the mean of `diffs` (every resample, by enumeration) and its
    (1 - level) / 2 and (1 + level) / 2 quantiles."""
    n = len(diffs)
    means = sorted(sum(draw) / n for draw in itertools.product(diffs, repeat=n))
    tail = (1 - level) / 2
    return means[int(tail * len(means))], means[int((1 - tail) * len(means))]


@pytest.mark.parametrize("diffs, level", [
    ([0, 0, 1], 0.9), ([0, 0, 1], 0.5), ([-1, 0, 0, 1], 0.8), ([0, 1, 1, 1], 0.6),
])
def test_the_bootstrap_interval_matches_the_exact_bootstrap_distribution(diffs, level):
    # the quantiles of every resample, enumerated, are the population values; 20,000 seeded draws land on them
    # where they sit far from a step of the distribution (these cases: every step is 3 standard errors away or more)
    a = [0.0] * len(diffs)
    assert stats.paired_interval(a, diffs, iterations=20_000, level=level) == bootstrap_quantiles(diffs, level)


def test_the_bootstrap_is_seeded_and_the_full_level_spans_every_resample():
    rng = numpy.random.default_rng(5)
    a, b = list(rng.random(25)), list(rng.random(25))
    assert stats.paired_interval(a, b, seed=3) == stats.paired_interval(a, b, seed=3)
    assert stats.paired_interval(a, b, seed=3) != stats.paired_interval(a, b, seed=4)
    assert stats.paired_interval([0.0], [0.5]) == (0.5, 0.5), "one pair: every resample is that pair"
    # level 1: the smallest and largest resample means; for differences 0 and 1 (n=2) those are 0 and 1, each
    # drawn with odds 1/4 a resample, so both are among 1,000 resamples (else odds 0.75**1000)
    assert stats.paired_interval([0.0, 0.0], [0.0, 1.0], iterations=1000, level=1.0) == (0.0, 1.0)


def comparison(a_values, b_values, **kwargs):
    a, b = dict(enumerate(a_values)), dict(enumerate(b_values))
    return stats.compare(a, b, {i: v >= 1 for i, v in a.items()}, {i: v >= 1 for i, v in b.items()}, **kwargs)


def test_a_comparison_holds_both_means_and_uses_the_examples_both_scored():
    c = comparison([1.0] * 10 + [0.0] * 20, [0.0] * 2 + [1.0] * 21 + [0.0] * 7)
    assert (c.n, c.baseline, c.new, c.difference) == (30, pytest.approx(10 / 30), pytest.approx(21 / 30),
                                                      pytest.approx(11 / 30))
    a, b = {1: 1.0, 2: 0.0, 3: 1.0}, {2: 1.0, 3: 1.0, 4: 0.0}
    c = stats.compare(a, b, {k: v == 1 for k, v in a.items()}, {k: v == 1 for k, v in b.items()})
    assert (c.n, c.baseline, c.new, c.fixed, c.broken) == (2, 0.5, 1.0, [2], []), "examples 2 and 3 only"
    empty = stats.compare({}, {}, {}, {})
    assert empty.n == 0 and all(math.isnan(x) for x in (empty.baseline, empty.new, empty.difference))


def test_a_comparison_uses_its_seed():
    rng = numpy.random.default_rng(8)
    a, b = list(rng.random(20)), list(rng.random(20))
    c = comparison(a, b, seed=77)
    assert c.interval == stats.paired_interval(a, b, seed=77) == comparison(a, b, seed=77).interval


def test_a_worse_prompt_reads_worse_and_a_graded_metric_has_no_mcnemar():
    c = comparison([1.0] * 20 + [0.0] * 10, [0.0] * 12 + [1.0] * 8 + [0.0] * 10)  # 12 broken, none fixed
    lo, hi = c.interval
    assert c.significant and c.mcnemar_p == pytest.approx(2 / 2**12)
    assert c.verdict() == \
        f"-0.400 (95% CI {lo:+.3f} to {hi:+.3f}, McNemar p={2 / 2**12:.3g}, n=30): worse than the baseline"
    assert c.verdict(higher_is_better=False).endswith("): better than the baseline"), \
        "for an error rate, lower is better"
    graded = comparison([0.2] * 30, [0.7] * 30)
    lo, hi = graded.interval
    assert graded.mcnemar_p is None and (lo, hi) == (pytest.approx(0.5), pytest.approx(0.5))
    # the paired permutation test: of 10,000 random sign swaps of 30 differences of 0.5, none reaches |0.5|
    # unless it swaps all or none (odds 2 / 2**30), so p = (1 + 0) / (1 + 10,000)
    assert graded.permutation_p == pytest.approx(1 / 10_001)
    assert graded.verdict() == \
        "+0.500 (95% CI +0.500 to +0.500, paired permutation p=0.0001, n=30): better than the baseline"
    assert graded.verdict(higher_is_better=False).endswith(", n=30): worse than the baseline")
    same = comparison([0.2] * 30, [0.2] * 30)  # every swap is as extreme as no difference: p = 1
    assert same.verdict() == ("no difference from the baseline that the test set can show (n=30, +0.000, "
                              "95% CI +0.000 to +0.000, paired permutation p=1)")


def test_a_comparison_as_a_dict_lists_its_interval_and_verdict():
    c = comparison([1.0] * 20 + [0.0] * 10, [0.0] * 12 + [1.0] * 8 + [0.0] * 10)
    d = c.to_dict()
    assert d["interval"] == list(c.interval) and d["significant"] is True
    assert (d["n"], d["fixed"], d["broken"], d["mcnemar_p"]) == (30, [], list(range(12)), c.mcnemar_p)


def test_the_sign_test_with_only_ties_is_one():
    assert stats.sign_test([1.0, 0.0], [1.0, 0.0]) == 1.0


def test_the_smallest_gain_at_a_level_the_first_changed_example_reaches():
    # one-sided: k fixed examples give p = 0.5**k; p <= alpha decides, so alpha 0.25 needs 2 and 0.6 needs 1
    assert stats.smallest_gain(10, alpha=0.25, two_sided=False) == 0.2
    assert stats.smallest_gain(10, alpha=0.6, two_sided=False) == 0.1


def test_the_permutation_test_enumerates_when_the_splits_are_exactly_the_iterations():
    # [1, 1] against [0, 0]: of the 6 splits, 2 put both ones together (|difference| 1), 4 split them (0): p = 2/6
    floor, p = stats.permutation_test([1.0, 1.0], [0.0, 0.0], iterations=6)
    assert p == pytest.approx(1 / 3) and floor == 1.0


def test_the_full_level_of_the_permutation_floor_is_the_largest_gap():
    # [3] against [0, 1]: the splits give |3 - 0.5| = 2.5, |0 - 2| = 2 and |1 - 1.5| = 0.5
    assert stats.permutation_test([3.0], [0.0, 1.0], level=1.0) == (2.5, pytest.approx(1 / 3))


def test_sampled_permutations_are_seeded():
    rng = numpy.random.default_rng(2)
    a, b = list(rng.random(12)), list(rng.random(12) + 0.2)
    assert stats.permutation_test(a, b, iterations=300) == stats.permutation_test(a, b, iterations=300)
